"""Training losses: the Sharpe loss of the DMN, a combined loss with turnover and risk penalties, the
multi-horizon MSE of the forecasters (annualised with 252 trading days), and the pinball loss of the
quantile forecasters (foundation models)."""

from __future__ import annotations

import math

import torch

from ..conventions import TRADING_DAYS

__all__ = ["sharpe_loss", "combined_loss", "multi_horizon_mse", "pinball_loss"]



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


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x[mask] if mask is not None else x.reshape(-1)


def combined_loss(
    positions: torch.Tensor,
    scaled_returns: torch.Tensor,
    vol_scale: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    *,
    cost_bps: float = 0.0,
    turnover_weight: float = 1.0,
    risk_weight: float = 0.0,
    risk: str = "variance",
    eps: float = 1e-12,
) -> torch.Tensor:
    """Minus the Sharpe ratio plus a turnover penalty and a risk penalty.

    ``loss = sharpe_loss + turnover_weight * T + risk_weight * R`` where, over the time axis (last
    dimension) of ``(B, L)`` tensors:

    * ``T = 252 * cost_bps / 1e4 * mean_t |w_t - w_{t-1}|``: the annualised cost drag of trading the
      volatility-scaled position ``w_t = positions_t * vol_scale_t`` (``vol_scale = target_vol /
      ex_ante_vol``; 1 if not given), a fraction of capital per year;
    * ``R``: the annualised variance ``252 * var(captured)`` (``risk="variance"``) or the annualised
      downside deviation ``sqrt(252 * mean(min(captured, 0)^2))`` (``risk="downside"``) of the
      captured returns ``positions * scaled_returns``.

    With ``cost_bps = 0`` and ``risk_weight = 0`` it equals :func:`sharpe_loss`. Both penalties are
    in units of annual returns; ``turnover_weight = 1`` charges the cost at face value against a
    Sharpe ratio (a judgement call the caller owns).

    Raises
    ------
    ValueError
        Unknown ``risk``, negative weights or cost, or shape mismatches.
    """
    if risk not in ("variance", "downside"):
        raise ValueError(f"risk must be 'variance' or 'downside', got {risk!r}")
    if cost_bps < 0 or turnover_weight < 0 or risk_weight < 0:
        raise ValueError(f"cost_bps, turnover_weight and risk_weight must be >= 0, got {cost_bps}, {turnover_weight}, {risk_weight}")
    loss = sharpe_loss(positions, scaled_returns, mask, eps)
    if cost_bps > 0 and turnover_weight > 0:
        w = positions if vol_scale is None else positions * vol_scale
        if w.shape != positions.shape:
            raise ValueError(f"vol_scale shape {tuple(vol_scale.shape)} != positions shape {tuple(positions.shape)}")
        dw = (w[..., 1:] - w[..., :-1]).abs()
        if mask is not None:
            pair = mask[..., 1:] & mask[..., :-1]
            dw = dw[pair]
        loss = loss + turnover_weight * TRADING_DAYS * cost_bps / 1e4 * dw.mean()
    if risk_weight > 0:
        captured = _masked(positions * scaled_returns, mask)
        if risk == "variance":
            r = TRADING_DAYS * ((captured - captured.mean()) ** 2).mean()
        else:
            r = torch.sqrt(TRADING_DAYS * (torch.clamp(captured, max=0.0) ** 2).mean() + eps)
        loss = loss + risk_weight * r
    return loss


def multi_horizon_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, weights=None, allow_empty: bool = False
) -> torch.Tensor:
    """Mean squared error over several forecast horizons.

    ``pred`` and ``target`` are ``(B, H)``, or ``(K, B, H)`` for K models trained as one stacked
    computation (:mod:`kit.training.batched`); ``mask`` of the same shape excludes missing targets;
    ``weights`` (length H, default equal) weight the horizons' MSEs, normalised to sum to 1:
    ``sum_h weights_h * sum_b mask (pred - target)^2 / sum_b mask``. Returns a scalar for ``(B, H)``
    inputs and the K models' losses ``(K,)`` for ``(K, B, H)``. ``target`` must be finite where
    ``mask`` is False (set it to 0: a NaN there would give NaN gradients through ``torch.where``).

    Raises
    ------
    ValueError
        Shapes differ, bad weights, or (unless ``allow_empty``, which counts such a horizon as 0) a
        horizon has no valid target.
    """
    if pred.shape != target.shape or pred.dim() not in (2, 3):
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, H) or (K, B, H)")
    H = pred.shape[-1]
    w = torch.full((H,), 1.0 / H, dtype=pred.dtype, device=pred.device) if weights is None else torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    if w.shape != (H,) or (w < 0).any():
        raise ValueError(f"weights must be {H} non-negative numbers, got {weights!r}")
    w = w / w.sum()
    if mask is None:
        per_h = ((pred - target) ** 2).mean(dim=-2)
    else:
        err = torch.where(mask, (pred - target) ** 2, torch.zeros_like(pred))
        counts = mask.sum(dim=-2)
        if not allow_empty and (counts == 0).any():
            raise ValueError(f"horizon(s) {torch.nonzero(counts == 0).flatten().tolist()} have no valid target")
        per_h = err.sum(dim=-2) / counts.clamp_min(1)
    return (w * per_h).sum(-1)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels) -> torch.Tensor:
    """Mean pinball (quantile) loss of Koenker & Bassett (1978), "Regression quantiles",
    Econometrica 46(1).

    ``rho_tau(u) = max(tau u, (tau - 1) u)`` with ``u = target - pred``, averaged over the quantile
    levels and then over the valid (sample, step) pairs.

    Parameters
    ----------
    pred : ``(B, P, Q)`` float tensor of quantile forecasts (Q levels).
    target : ``(B, P)`` float tensor (finite where ``mask`` is False too: set it to 0 there).
    mask : ``(B, P)`` bool tensor, True where the target is known.
    levels : the Q quantile levels, each in (0, 1).

    Returns
    -------
    0-d tensor (0 when ``mask`` selects nothing).

    Raises
    ------
    ValueError
        Shapes that disagree, or a level outside (0, 1).
    """
    tau = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device)
    if pred.dim() != 3 or target.shape != pred.shape[:2] or mask.shape != target.shape or tau.shape != pred.shape[-1:]:
        raise ValueError(
            f"pred (B, P, Q), target and mask (B, P), levels (Q,) disagree: {tuple(pred.shape)}, {tuple(target.shape)}, "
            f"{tuple(mask.shape)}, {tuple(tau.shape)}"
        )
    if ((tau <= 0) | (tau >= 1)).any():
        raise ValueError(f"levels must lie in (0, 1), got {list(levels)}")
    u = target.unsqueeze(-1) - pred
    loss = torch.maximum(tau * u, (tau - 1) * u).mean(dim=-1)
    m = mask.to(pred.dtype)
    return (loss * m).sum() / m.sum().clamp_min(1.0)
