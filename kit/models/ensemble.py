"""Ensembles of position models, with weights fitted on validation blocks only."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .losses import sharpe_loss

__all__ = ["ensemble_weights", "PositionEnsemble"]



def ensemble_weights(val_losses=None, method: str = "equal", val_positions=None, val_target=None, steps: int = 300, lr: float = 0.05) -> np.ndarray:
    """Weights for combining K members' positions, from validation-period information only.

    ``equal``: 1/K. ``inverse_loss``: proportional to 1 / validation loss, where losses are positive
    (e.g. MSE) or, for Sharpe losses (negative is good), to ``max(-loss, 0)`` with equal weights if
    none is positive. ``stacked``: non-negative weights summing to 1 (a softmax) fitted by
    maximising the Sharpe ratio of the combined validation positions ``(K, ...)`` against
    ``val_target`` (the same scaled returns as the Sharpe loss). Never fit on test periods.

    Returns
    -------
    (K,) float64 weights summing to 1.

    Raises
    ------
    ValueError
        Unknown method or missing inputs for it.
    """
    if method == "equal":
        k = len(val_losses) if val_losses is not None else len(val_positions)
        return np.full(k, 1.0 / k)
    if method == "inverse_loss":
        if val_losses is None:
            raise ValueError("method='inverse_loss' needs val_losses")
        losses = np.asarray(val_losses, dtype=float)
        score = 1.0 / losses if (losses > 0).all() else np.maximum(-losses, 0.0)
        if score.sum() <= 0:
            return np.full(len(losses), 1.0 / len(losses))
        return score / score.sum()
    if method == "stacked":
        if val_positions is None or val_target is None:
            raise ValueError("method='stacked' needs val_positions (K, ...) and val_target")
        P = torch.as_tensor(np.nan_to_num(np.asarray(val_positions, dtype=np.float64)))
        y = torch.tensor(np.array(val_target, dtype=np.float64))
        mask = torch.isfinite(y) & torch.isfinite(torch.as_tensor(np.asarray(val_positions, dtype=np.float64))).all(0)
        y = torch.nan_to_num(y)
        logits = torch.zeros(P.shape[0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            w = torch.softmax(logits, 0)
            combined = (w.view(-1, *([1] * (P.dim() - 1))) * P).sum(0)
            loss = sharpe_loss(combined, y, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.softmax(logits, 0).detach().numpy()
    raise ValueError(f"method must be 'equal', 'inverse_loss' or 'stacked', got {method!r}")



class PositionEnsemble(nn.Module):
    """Weighted average of K position models' outputs: ``sum_k w_k X_k`` (stays in [-1, 1]).
    ``(B, L, F) -> (B, L)``; weights from :func:`ensemble_weights`."""

    def __init__(self, members, weights):
        super().__init__()
        self.members = nn.ModuleList(members)
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if w.shape != (len(self.members),) or (w < 0).any() or abs(float(w.sum()) - 1) > 1e-5:
            raise ValueError(f"weights must be {len(self.members)} non-negative numbers summing to 1, got {weights!r}")
        self.register_buffer("weights", w)

    def forward(self, x):
        return sum(w * m(x) for w, m in zip(self.weights, self.members, strict=True))

