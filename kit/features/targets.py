"""Training targets, known only after the decision date: the DMN's scaled next-day return, forward
returns over several horizons, and next-period returns between rebalance dates. Targets of tabular
models come with ``label_end``, the date position of the last price they use, so that walk-forward
folds can embargo each row by its own horizon (:func:`kit.training.splits.count_leakage`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..conventions import VOL_SPAN
from . import kernels
from .indicators import daily_returns, ex_ante_vol
from .sets import FeatureArray

__all__ = ["next_day_target", "forward_returns", "horizon_target", "period_returns"]



def next_day_target(close: pd.DataFrame, target_vol: float = 0.15, vol_span: int = VOL_SPAN) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The DMN training target and the ex-ante volatility it uses.

    ``target_t = target_vol / ex_ante_vol_t * r_{t+1}`` so that ``position_t * target_t`` is the
    captured return of Lim et al. (2019), eq. 1. ``ex_ante_vol_t`` (annualised) uses returns up to t;
    ``r_{t+1}`` is the next day's simple return (after t only).

    Returns
    -------
    (target, ex_ante_vol): two ``(T, N)`` DataFrames. The target is NaN on the last date and where
    the volatility is zero or undefined.
    """
    rets = daily_returns(close)
    vol = ex_ante_vol(rets, span=vol_span, annualise=True)
    target = target_vol / vol.where(vol > 0) * rets.shift(-1)
    return target, vol



def forward_returns(close: pd.DataFrame, horizons=(1, 5, 21), log: bool = False) -> FeatureArray:
    """Targets for several horizons: ``r_{t,t+h} = close_{t+h} / close_t - 1`` (or its log), known
    only after t. Returns a FeatureArray ``(T, N, H)`` named ``fwd_ret_{h}``; NaN for the last h dates
    and where either price is missing."""
    x = close.to_numpy(dtype="float64")
    out = np.full((*x.shape, len(horizons)), np.nan)
    for i, h in enumerate(horizons):
        if int(h) != h or h < 1:
            raise ValueError(f"horizons must be positive integers, got {h!r}")
        r = kernels.log_returns(x, h) if log else kernels.simple_returns(x, h)
        out[: len(x) - h, :, i] = r[h:]
    names = [f"fwd_{'log_' if log else ''}ret_{h}" for h in horizons]
    return FeatureArray(out, names, close.index, close.columns)




def horizon_target(close: pd.DataFrame, horizon: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """The h-day forward return ``close_{t+h} / close_t - 1`` (:func:`forward_returns`) with its
    ``label_end = t + h``.

    Returns
    -------
    (target, label_end): ``(T, N)`` DataFrame (NaN for the last h dates and across missing prices)
    and ``(T,)`` int64 positions of the last price each date's target uses.

    Raises
    ------
    ValueError
        ``horizon`` not a positive integer.
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    fa = forward_returns(close, (int(horizon),))
    target = pd.DataFrame(fa.values[:, :, 0], index=close.index, columns=close.columns)
    return target, np.arange(len(close), dtype=np.int64) + int(horizon)



def period_returns(close: pd.DataFrame, rebalance_positions) -> tuple[pd.DataFrame, np.ndarray]:
    """Next-period returns between rebalance dates: ``close_{t_{k+1}} / close_{t_k} - 1`` at ``t_k``.

    Parameters
    ----------
    close : (T, N) adjusted closes.
    rebalance_positions : sorted, unique integer positions of the rebalance dates on ``close.index``
        (e.g. :func:`kit.features.cross_section.rebalance_positions`).

    Returns
    -------
    (target, label_end): ``(T, N)`` DataFrame, NaN off rebalance dates, on the last rebalance date
    and where either price is missing; ``(T,)`` int64 position of ``t_{k+1}`` for each rebalance
    date ``t_k`` (``T``, beyond the data, elsewhere).

    Raises
    ------
    ValueError
        Positions not strictly increasing or outside ``[0, T)``.
    """
    pos = np.asarray(rebalance_positions, dtype=np.int64)
    c = close.to_numpy(dtype="float64")
    T = len(c)
    if len(pos) and (pos.min() < 0 or pos.max() >= T or (np.diff(pos) <= 0).any()):
        raise ValueError(f"rebalance_positions must be strictly increasing positions in [0, {T}), got {pos[:5]}...")
    out = np.full(c.shape, np.nan)
    end = np.full(T, T, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[pos[:-1]] = c[pos[1:]] / c[pos[:-1]] - 1.0
    end[pos[:-1]] = pos[1:]
    return pd.DataFrame(out, index=close.index, columns=close.columns), end
