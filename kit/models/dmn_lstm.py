"""The Deep Momentum Network, LSTM variant (Lim, Zohren & Roberts, 2019)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["DMNConfig", "DeepMomentumLSTM"]



@dataclass
class DMNConfig:
    """Configuration of :class:`DeepMomentumLSTM` (stored in every checkpoint)."""

    n_features: int
    hidden_size: int = 20
    num_layers: int = 1
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return {"model": "dmn_lstm", **asdict(self)}



class DeepMomentumLSTM(nn.Module):
    """Deep Momentum Network, LSTM variant (Lim, Zohren & Roberts, 2019, section 3.2 and eq. 1).

    An LSTM over the lookback window, dropout, and a linear layer with tanh giving the position
    ``X_t in [-1, 1]`` at every time step. Trained with :func:`kit.models.losses.sharpe_loss` on captured
    returns ``X_t * target_vol / ex_ante_vol_t * r_{t+1}``.

    Shapes: input ``(B, L, F)`` float32 -> output ``(B, L)`` float32 in [-1, 1].
    """

    def __init__(self, config: DMNConfig):
        super().__init__()
        if config.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {config.n_features}")
        if config.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {config.hidden_size}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
        self.config = config
        self.lstm = nn.LSTM(
            config.n_features,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, 1)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Positions ``(B, L)``, or ``(B,)`` for the last step only when ``last_only`` (live
        inference: the head runs on one step instead of ``L``). Raises ``ValueError`` on a bad shape."""
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        h, _ = self.lstm(x)
        if last_only:
            h = h[:, -1]
        return torch.tanh(self.head(self.dropout(h))).squeeze(-1)

