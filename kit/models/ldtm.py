"""The per-ticker multi-horizon LSTM forecaster "LDTM" of seed 003."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..conventions import FORECAST_HORIZONS

__all__ = ["LDTMConfig", "LDTMForecaster", "window_minmax"]



@dataclass
class LDTMConfig:
    """Configuration of :class:`LDTMForecaster` (defaults from seed 003)."""

    n_features: int = 11
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.2
    horizons: tuple = FORECAST_HORIZONS

    def to_dict(self) -> dict:
        d = asdict(self)
        d["horizons"] = list(self.horizons)
        return {"model": "ldtm", **d}



def window_minmax(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-window, per-feature min-max scaling to [0, 1] over the lookback axis:
    ``(x - min_L x) / (max_L x - min_L x)``, 0.5 where a feature is constant in the window.
    ``(B, L, F) -> (B, L, F)``; uses only the window itself (no look-ahead)."""
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    span = hi - lo
    return torch.where(span > eps, (x - lo) / span.clamp_min(eps), torch.full_like(x, 0.5))



class LDTMForecaster(nn.Module):
    """Per-ticker multi-horizon LSTM ("LDTM", seed 003): per-window min-max normalisation, a 2-layer
    LSTM (hidden 128) over a 30-day window of the 11 ``ldtm`` features, and one 128-64-1 head per
    horizon (1, 5, 21 days) on the last hidden state. Forecasts are forward simple returns.

    Shapes: ``(B, L, 11)`` -> ``(B, H)`` float32.
    """

    def __init__(self, config: LDTMConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.lstm = nn.LSTM(config.n_features, h, num_layers=config.num_layers, batch_first=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.Linear(h, 64), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(64, 1)) for _ in config.horizons]
        )

    def forward(self, x):
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        h, _ = self.lstm(window_minmax(x))
        last = h[:, -1]
        return torch.cat([head(last) for head in self.heads], dim=-1)

