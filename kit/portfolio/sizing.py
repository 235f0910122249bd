"""Sizing: positions to weights by per-asset volatility targeting and equal-risk averaging, optional
book-level volatility targeting, the gross cap, and turnover.

Weights are fractions of equity, ``(T, N)`` DataFrames; a weight decided at the close of t (from data
up to t) earns ``r_{t+1}``. The kit does not borrow: gross exposure is capped at ``max_gross`` (0.95
by default) because vectorbt limits purchases to the cash available (:mod:`kit.portfolio.backtest`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..conventions import TARGET_VOL
from ..features import indicators

__all__ = ["vol_scaled_weights", "portfolio_vol_scaled_weights", "turnover"]



def _check_labels(close: pd.DataFrame, weights: pd.DataFrame) -> None:
    if not (weights.index.equals(close.index) and list(weights.columns) == list(close.columns)):
        raise ValueError("weights and close must have the same dates and symbols")



def vol_scaled_weights(
    positions: pd.DataFrame,
    ex_ante_vol: pd.DataFrame,
    target_vol: float = TARGET_VOL,
    max_gross: float = 0.95,
    max_net: float | None = None,
) -> pd.DataFrame:
    """Portfolio weights from positions: per-asset volatility targeting and equal-risk averaging.

    ``w_{t,i} = X_{t,i} * target_vol / ex_ante_vol_{t,i} / N_t`` where ``N_t`` is the number of
    assets live at t (finite position and positive volatility): the portfolio return is the average
    of the live assets' captured returns, as in Lim et al. (2019), eq. 1. Averaging over the live
    count (not over all N symbols of the panel) keeps each asset's risk budget at ``1 / N_t`` of
    the book whatever the number of listed symbols: when symbols enter, every weight shrinks; when
    they leave (or are not yet listed), the others grow. Assets that are not live get weight 0.
    When the gross exposure ``sum_i |w_{t,i}|`` exceeds ``max_gross`` (a fraction of equity), all
    weights of that day are scaled down by the same factor so it equals ``max_gross``; likewise
    when ``|sum_i w_{t,i}|`` exceeds ``max_net`` (if given). With ``max_gross`` above 1 a
    long-short book is funded by its short sales (the kit does not borrow cash): set ``max_net``
    (e.g. 0.95) so the net exposure stays fundable.
    The kit does not borrow: vectorbt limits purchases to the available cash net of fees, so a
    book near 100% net exposure would be silently clipped and deviate from its target.
    The default cap of 0.95 leaves room for costs; below it, :func:`simulate` equals
    :func:`reference_returns` to about 1e-15 (tested).

    Parameters
    ----------
    positions : (T, N) DataFrame of positions in [-1, 1]; NaN = not live.
    ex_ante_vol : (T, N) DataFrame of annualised ex-ante volatility (same labels).
    target_vol : annualised target volatility per asset (default 0.15).
    max_gross : cap on gross exposure, fraction of equity (default 0.95).
    max_net : cap on the absolute net exposure, fraction of equity (default None: only the gross cap).

    Returns
    -------
    (T, N) DataFrame of weights (fractions of equity), no NaN.

    Raises
    ------
    ValueError
        Labels differ, ``target_vol``, ``max_gross`` or ``max_net`` not positive, or a position
        outside [-1, 1].
    """
    if target_vol <= 0:
        raise ValueError(f"target_vol must be > 0, got {target_vol}")
    _check_caps(max_gross, max_net)
    vol = ex_ante_vol.reindex(index=positions.index, columns=positions.columns)
    pos = positions.to_numpy(dtype="float64")
    if np.nanmax(np.abs(pos), initial=0.0) > 1 + 1e-9:
        raise ValueError(f"positions must lie in [-1, 1]; max |position| = {np.nanmax(np.abs(pos))}")
    v = vol.to_numpy(dtype="float64")
    live = np.isfinite(pos) & np.isfinite(v) & (v > 0)
    n_live = live.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(live, pos * target_vol / np.where(live, v, 1.0), 0.0) / np.maximum(n_live, 1)
    return pd.DataFrame(_cap_exposure(w, max_gross, max_net), index=positions.index, columns=positions.columns)



def _check_caps(max_gross: float, max_net: float | None) -> None:
    if not max_gross > 0:
        raise ValueError(f"max_gross must be > 0, got {max_gross}")
    if max_net is not None and not max_net > 0:
        raise ValueError(f"max_net must be > 0 or None, got {max_net}")



def _cap_exposure(w: np.ndarray, max_gross: float, max_net: float | None = None) -> np.ndarray:
    """Scale each row of ``(T, N)`` weights down (never up) so that gross exposure is at most
    ``max_gross`` and, if given, the absolute net exposure at most ``max_net``."""
    gross = np.abs(w).sum(axis=1, keepdims=True)
    scale = np.where(gross > max_gross, max_gross / np.where(gross > 0, gross, 1.0), 1.0)
    if max_net is not None:
        net = np.abs(w.sum(axis=1, keepdims=True))
        scale = np.minimum(scale, np.where(net > max_net, max_net / np.where(net > 0, net, 1.0), 1.0))
    return w * scale



def portfolio_vol_scaled_weights(
    weights: pd.DataFrame,
    close: pd.DataFrame,
    portfolio_target_vol: float = TARGET_VOL,
    span: int = 60,
    min_periods: int = 20,
    max_gross: float = 0.95,
    max_net: float | None = None,
) -> pd.DataFrame:
    """Portfolio-level volatility targeting on top of per-asset weights, with past data only.

    The book's daily return as if held at the given weights, ``p_t = sum_i w_{t-1,i} r_{t,i}``
    (``r`` the assets' simple close-to-close returns; a missing return counts 0), gives the
    ex-ante volatility ``sigma_t`` (EWM std, span ``span``, annualised, as
    :func:`kit.features.indicators.ex_ante_vol`) from ``p_1 .. p_t`` only, all known at the close of t. The
    weights decided at t are multiplied by ``portfolio_target_vol / sigma_t`` and the gross cap
    ``max_gross`` (and ``max_net``, if given) is applied again (so a book whose volatility is below
    target can be scaled up only to the caps: the kit does not borrow cash). Until ``min_periods``
    returns exist, or where ``sigma_t`` is 0, the weights are left unscaled.

    The scale is a function of past returns only, so it is an ex-ante risk target: with a constant
    scale ``c`` (and no costs) the book's daily returns are exactly ``c`` times the unscaled ones
    and its Sharpe ratio is unchanged; a time-varying estimate changes the Sharpe ratio only
    through the estimation (``tests/test_cross_sectional.py`` shows both).

    Parameters
    ----------
    weights : (T, N) weights, e.g. from :func:`vol_scaled_weights`.
    close : (T, N) adjusted closes, same labels.
    portfolio_target_vol : annualised target for the book (default 0.15).
    span, min_periods : of the EWM volatility estimate (default 60 and 20 days).
    max_gross : gross exposure cap after scaling, fraction of equity (default 0.95).
    max_net : cap on the absolute net exposure after scaling (default None).

    Returns
    -------
    (T, N) DataFrame of weights.

    Raises
    ------
    ValueError
        ``portfolio_target_vol`` or ``max_gross`` not positive, or mismatched labels.
    """
    if not portfolio_target_vol > 0:
        raise ValueError(f"portfolio_target_vol must be > 0, got {portfolio_target_vol}")
    _check_caps(max_gross, max_net)
    _check_labels(close, weights)
    w = weights.to_numpy(dtype="float64")
    r = indicators.daily_returns(close).to_numpy(dtype="float64")
    p = np.full(len(w), np.nan)
    p[1:] = np.nansum(w[:-1] * np.where(np.isfinite(r[1:]), r[1:], 0.0), axis=1)
    sigma = indicators.ex_ante_vol(pd.DataFrame(p[:, None]), span=span, min_periods=min_periods).to_numpy()[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(np.isfinite(sigma) & (sigma > 0), portfolio_target_vol / sigma, 1.0)
    return pd.DataFrame(_cap_exposure(w * scale[:, None], max_gross, max_net), index=weights.index, columns=weights.columns)



def turnover(weights: pd.DataFrame) -> pd.Series:
    """Daily turnover of target weights: ``sum_i |w_{t,i} - w_{t-1,i}|`` (first day from zero).
    A NaN weight (no rebalance) keeps the previous target, as in :func:`simulate`."""
    held = weights.ffill().fillna(0.0)
    change = held.diff()
    change.iloc[:1] = held.iloc[:1]
    return change.abs().sum(axis=1)

