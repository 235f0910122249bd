"""Multi-timeframe features: the daily DMN inputs plus weekly and monthly momentum and volatility,
without look-ahead.

A weekly (monthly) bar is the last daily close of a calendar week (month) of exchange sessions,
labelled with that period's last session (:func:`kit.data.period_labels`); it is known at the close of
that session and not before, so on every other day the features hold the last *completed* bar's
values (a Wednesday sees the previous week's bar). For each coarse timeframe: returns over ``k`` bars
normalised by the bar volatility, ``r_{t-k,t} / (sigma_t sqrt(k))`` (as the DMN inputs, Lim, Zohren &
Roberts, 2019, with ``sigma`` the EWM std of the coarse bars' returns), and that volatility annualised
(``sqrt(52)``, ``sqrt(12)``).

This is a function, not an entry of :data:`kit.features.FEATURE_SETS`: the table's streaming engines
step one bar of prices at a time with per-symbol state, but a weekly bar's end is a property of the
exchange calendar (the last session of the week), which those engines do not receive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.bars import DEFAULT_EXCHANGE, period_labels
from . import kernels
from .sets import FeatureArray, feature_set

__all__ = ["multi_timeframe_features", "TIMEFRAMES"]

TIMEFRAMES = {
    "weekly": {"prefix": "w", "horizons": (4, 13, 52), "span": 26, "min_periods": 10, "bars_per_year": 52},
    "monthly": {"prefix": "m", "horizons": (3, 6, 12), "span": 12, "min_periods": 6, "bars_per_year": 12},
}
"""Per coarse timeframe: feature name prefix, return horizons (bars), EWM span and minimum bars of
the volatility, and the annualisation factor."""


def _coarse(close: pd.DataFrame, rule: str, calendar: str) -> tuple[pd.DataFrame, pd.Series]:
    labels = period_labels(close.index, rule, calendar)
    bars = close.groupby(labels.to_numpy()).last()  # last valid close of each symbol in the period
    bars.index = pd.DatetimeIndex(bars.index)
    complete = bars.index <= close.index[-1]  # the last period may not be over yet
    return bars[complete], labels


def multi_timeframe_features(close: pd.DataFrame, timeframes=("weekly", "monthly"), calendar: str = DEFAULT_EXCHANGE) -> FeatureArray:
    """Daily DMN inputs plus weekly and monthly momentum and volatility on the daily dates.

    Parameters
    ----------
    close : (T, N) adjusted daily closes (index: exchange sessions).
    timeframes : subset of :data:`TIMEFRAMES`.
    calendar : exchange code for the week and month boundaries.

    Returns
    -------
    FeatureArray ``(T, N, 8 + 4 * len(timeframes))``: the ``dmn`` names, then per timeframe
    ``{p}_ret_norm_{k}`` for its horizons and ``{p}_vol``. A value at date t uses daily closes up to
    the last completed coarse bar at or before t only.

    Raises
    ------
    ValueError
        Unknown timeframe, or an index that is not daily.
    """
    unknown = [t for t in timeframes if t not in TIMEFRAMES]
    if unknown:
        raise ValueError(f"unknown timeframe(s) {unknown}; known: {list(TIMEFRAMES)}")
    if (close.index != close.index.normalize()).any():
        raise ValueError("close must be daily bars (dates without a time of day); resample intraday bars first")
    base = feature_set("dmn", close)
    values, names = [base.values], list(base.names)
    for tf in timeframes:
        spec = TIMEFRAMES[tf]
        bars, _ = _coarse(close, tf, calendar)
        x = bars.to_numpy(dtype="float64")
        rets = kernels.simple_returns(x, 1)
        sigma = kernels.ex_ante_vol(rets, span=spec["span"], min_periods=spec["min_periods"], annualise=False)
        feats = [kernels.vol_normalised_returns(x, k, sigma) for k in spec["horizons"]]
        feats.append(sigma * np.sqrt(spec["bars_per_year"]))
        block = np.stack(feats, axis=-1)  # (T_bars, N, F)
        pos = bars.index.searchsorted(close.index, side="right") - 1  # last bar completed by each day
        daily = np.full((len(close), close.shape[1], block.shape[-1]), np.nan)
        ok = pos >= 0
        daily[ok] = block[pos[ok]]
        values.append(daily)
        names += [f"{spec['prefix']}_ret_norm_{k}" for k in spec["horizons"]] + [f"{spec['prefix']}_vol"]
    return FeatureArray(np.concatenate(values, axis=-1), names, close.index, close.columns)
