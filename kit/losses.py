"""Training losses (annualised with 252 trading days)."""

from __future__ import annotations

import math

import torch

__all__ = ["sharpe_loss"]

TRADING_DAYS = 252


def sharpe_loss(positions: torch.Tensor, scaled_returns: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Minus the annualised Sharpe ratio of captured returns (Lim, Zohren & Roberts, 2019, eq. 8).

    ``R = positions * scaled_returns`` with ``scaled_returns = target_vol / ex_ante_vol_t * r_{t+1}``;
    ``loss = -sqrt(252) * mean(R) / sqrt(var(R) + eps)`` over every valid element of the batch
    (all assets and time steps pooled, as in the paper). The variance is the **population** variance
    (divides by n, not n - 1).

    Parameters
    ----------
    positions, scaled_returns : tensors of the same shape, e.g. ``(B, L)``.
    mask : bool tensor of that shape, optional; False elements are excluded.
    eps : added to the variance so a constant batch gives a finite loss.

    Returns
    -------
    Scalar tensor.

    Raises
    ------
    ValueError
        Shapes differ, or the mask selects fewer than two elements.
    """
    if positions.shape != scaled_returns.shape:
        raise ValueError(f"positions shape {tuple(positions.shape)} != scaled_returns shape {tuple(scaled_returns.shape)}")
    captured = positions * scaled_returns
    if mask is not None:
        captured = captured[mask]
    else:
        captured = captured.reshape(-1)
    if captured.numel() < 2:
        raise ValueError(f"mask selects {captured.numel()} element(s); the Sharpe ratio needs at least 2")
    mean = captured.mean()
    var = ((captured - mean) ** 2).mean()
    return -math.sqrt(TRADING_DAYS) * mean / torch.sqrt(var + eps)
