"""Training targets, known only after the decision date: the DMN's scaled next-day return and
forward returns over several horizons."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..conventions import VOL_SPAN
from . import kernels
from .indicators import daily_returns, ex_ante_vol
from .sets import FeatureArray

__all__ = ["next_day_target", "forward_returns"]



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

