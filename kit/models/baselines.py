"""Per-step baselines: a linear model and a one-hidden-layer MLP with a tanh position head."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["BaselineConfig", "PerStepBaseline"]



@dataclass
class BaselineConfig:
    """Configuration of the linear (``hidden_size = 0``) and MLP baselines."""

    n_features: int
    hidden_size: int = 0
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return {"model": "mlp" if self.hidden_size else "linear", **asdict(self)}



class PerStepBaseline(nn.Module):
    """Position from the current step's features only: ``tanh(w . x_t + b)`` (linear) or
    ``tanh(MLP(x_t))`` with one hidden ReLU layer (mlp). Same interface as the sequence models:
    ``(B, L, F) -> (B, L)``."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        if config.hidden_size:
            self.net = nn.Sequential(nn.Linear(config.n_features, config.hidden_size), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.hidden_size, 1))
        else:
            self.net = nn.Linear(config.n_features, 1)

    def forward(self, x):
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        return torch.tanh(self.net(x)).squeeze(-1)

