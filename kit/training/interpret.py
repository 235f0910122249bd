"""Interpretation of a trained Momentum Transformer: variable importance and attention by lag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..features import rolling_windows
from ..models import MomentumTransformer, PositionEnsemble

__all__ = ["explain_transformer"]



@torch.no_grad()
def explain_transformer(model: torch.nn.Module, features: np.ndarray, start: int, end: int, lookback: int, feature_names, max_windows: int = 4096) -> dict:
    """Interpretation of a :class:`kit.models.transformer.MomentumTransformer` (or the first one inside a
    :class:`kit.models.PositionEnsemble`) on the windows ending at dates ``[start, end)``.

    Returns
    -------
    dict with ``variable_importance`` (Series over features: mean variable-selection weight),
    ``attention_by_lag`` (array ``(lookback,)``: mean attention of the last step on each lag, lag 0 =
    the decision date), or ``None`` when the model holds no transformer.
    """
    net = model
    if isinstance(model, PositionEnsemble):
        net = next((m for m in model.members if isinstance(m, MomentumTransformer)), None)
    if not isinstance(net, MomentumTransformer):
        return None
    net.eval()
    X, valid = rolling_windows(features, start, end, lookback)
    keep = np.flatnonzero(valid.reshape(-1))
    if len(keep) > max_windows:
        keep = keep[np.linspace(0, len(keep) - 1, max_windows).astype(int)]
    dev = next(net.parameters()).device
    _, w = net(torch.as_tensor(X[keep]).to(dev), return_weights=True)
    vi = w["variable_weights"].mean(dim=(0, 1)).cpu().numpy()
    att = w["attention"][:, :, -1, :].mean(dim=(0, 1)).cpu().numpy()[::-1].copy()
    return {"variable_importance": pd.Series(vi, index=list(feature_names)), "attention_by_lag": att}

