"""Benchmarks beside every strategy: long only, time-series momentum (TSMOM) and the MACD trend signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..conventions import DMN_MACD_PAIRS
from ..features import macd_composite

__all__ = ["long_only_positions", "tsmom_positions", "macd_positions", "benchmark_positions"]



def long_only_positions(close: pd.DataFrame) -> pd.DataFrame:
    """Long-only benchmark: position +1 wherever a price exists, NaN elsewhere."""
    return close.notna().astype("float64").where(close.notna())



def tsmom_positions(close: pd.DataFrame, lookback: int = 252) -> pd.DataFrame:
    """Time-series momentum of Moskowitz, Ooi & Pedersen (2012): the sign of the past
    ``lookback``-day (12-month) return, ``sign(close_t / close_{t-lookback} - 1)``; NaN until
    ``lookback`` days of history exist."""
    return np.sign(close / close.shift(lookback) - 1.0)



def macd_positions(
    close: pd.DataFrame, pairs=DMN_MACD_PAIRS, price_window: int = 63, signal_window: int = 252
) -> pd.DataFrame:
    """Combined MACD trend signal of Baz et al. (2015), the DMN paper's MACD benchmark.

    The position is :func:`kit.features.indicators.macd_composite`,
    ``X_t = (1/K) sum_k phi(Y_t(S_k, L_k))`` with ``phi(y) = y exp(-y^2 / 4) / 0.89`` over the
    ``K`` time-scale pairs (Lim, Zohren & Roberts, 2019, eq. 10-12).
    ``|phi| <= sqrt(2) exp(-1/2) / 0.89 ~ 0.964``, so positions lie in [-1, 1].

    Parameters
    ----------
    close : (T, N) adjusted closes.
    pairs : (short, long) time scales in days.
    price_window, signal_window : rolling windows of the two normalisations (63 and 252 days).

    Returns
    -------
    (T, N) DataFrame of positions; NaN until every pair's indicator exists
    (``price_window + signal_window - 1`` valid prices).
    """
    return macd_composite(close, pairs, price_window, signal_window)



def benchmark_positions(
    close: pd.DataFrame, index: pd.DatetimeIndex, tsmom_lookback: int = 252, macd: bool = True
) -> dict[str, pd.DataFrame]:
    """Long-only, TSMOM and (unless ``macd=False``) MACD positions on ``index``, computed on the
    full history of ``close`` so the 12-month lookback and the MACD normalisations are available
    at the first date, then sliced."""
    out = {
        "Long only": long_only_positions(close).reindex(index),
        "TSMOM": tsmom_positions(close, tsmom_lookback).reindex(index),
    }
    if macd:
        out["MACD"] = macd_positions(close).reindex(index)
    return out

