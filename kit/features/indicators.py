"""Labelled ``(T, N)`` wrappers of the kernels: returns, ex-ante volatility, normalised returns, the
MACD signal, and the classic indicators of one symbol for plots. Every value at date t uses prices up
to and including t only; NaN stays NaN (nothing is filled)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..conventions import DMN_MACD_PAIRS, TRADING_DAYS, VOL_SPAN
from . import kernels

__all__ = [
    "daily_returns",
    "ex_ante_vol",
    "normalised_returns",
    "macd_signal",
    "baz_response",
    "macd_composite",
    "symbol_indicators",
]



def _like(values: np.ndarray, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(values, index=frame.index, columns=frame.columns)



def daily_returns(close: pd.DataFrame) -> pd.DataFrame:
    """Simple daily returns ``close_t / close_{t-1} - 1`` of a ``(T, N)`` frame (NaN across gaps)."""
    return _like(kernels.simple_returns(close.to_numpy(dtype="float64"), 1), close)



def ex_ante_vol(returns: pd.DataFrame, span: int = VOL_SPAN, min_periods: int = 20, annualise: bool = True,
                bars_per_year: float = TRADING_DAYS) -> pd.DataFrame:
    """Ex-ante volatility: EWM std (span 60, ``adjust=True``, bias-corrected, as pandas) of per-bar
    returns up to t; annualised with ``sqrt(bars_per_year)`` (252 for daily bars; take it from the
    data: :attr:`kit.data.ValidationReport.bars_per_year`) unless ``annualise=False``. NaN until
    ``min_periods`` valid returns; 0.0 for a constant price. ``(T, N)`` DataFrame."""
    return _like(kernels.ex_ante_vol(returns.to_numpy(dtype="float64"), span, min_periods, annualise, bars_per_year), returns)



def normalised_returns(close: pd.DataFrame, k: int, daily_vol: pd.DataFrame) -> pd.DataFrame:
    """``(close_t / close_{t-k} - 1) / (sigma_t * sqrt(k))`` with the daily ex-ante volatility;
    NaN where it is zero (never inf)."""
    return _like(kernels.vol_normalised_returns(close.to_numpy(dtype="float64"), k, daily_vol.to_numpy(dtype="float64")), close)



def macd_signal(close: pd.DataFrame, short: int, long: int, price_window: int = 63, signal_window: int = 252) -> pd.DataFrame:
    """Normalised MACD of Baz et al. (2015); see :func:`kit.features.kernels.macd_baz`."""
    return _like(kernels.macd_baz(close.to_numpy(dtype="float64"), short, long, price_window, signal_window), close)



def baz_response(y):
    """The response function of Baz et al. (2015): ``phi(y) = y exp(-y^2 / 4) / 0.89``.

    It maps a normalised MACD ``y`` to a signal in about [-0.964, 0.964]
    (``max |phi| = sqrt(2) exp(-1/2) / 0.89``). Shapes: any array or frame; float64; NaN stays NaN.
    """
    return y * np.exp(-(y**2) / 4.0) / 0.89



def macd_composite(close: pd.DataFrame, pairs=DMN_MACD_PAIRS, price_window: int = 63, signal_window: int = 252) -> pd.DataFrame:
    """The combined MACD signal of Baz et al. (2015): ``X_t = (1/K) sum_k phi(Y_t(S_k, L_k))``.

    ``Y`` is :func:`macd_signal` for each ``(S_k, L_k)`` of ``pairs`` (default (8, 24), (16, 48),
    (32, 96)) and ``phi`` is :func:`baz_response` (Lim, Zohren & Roberts, 2019, eq. 10-12). Used as
    the time-series MACD benchmark's position (:func:`kit.portfolio.benchmarks.macd_positions`) and,
    ranked across assets, as the cross-sectional MACD score (Poh et al., 2021).

    Parameters
    ----------
    close : (T, N) adjusted closes.
    pairs : (short, long) time scales in days.
    price_window, signal_window : the two normalisation windows (63 and 252 days).

    Returns
    -------
    (T, N) float64 DataFrame in about [-0.964, 0.964]; NaN until every pair's indicator exists
    (``price_window + signal_window - 1`` valid prices).

    Raises
    ------
    ValueError
        ``pairs`` empty, or a pair with ``short >= long``.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs must name at least one (short, long) pair")
    total = None
    for short, long in pairs:
        phi = baz_response(macd_signal(close, short, long, price_window, signal_window))
        total = phi if total is None else total + phi
    return total / len(pairs)



def symbol_indicators(frames: dict[str, pd.DataFrame], symbol: str, window: int = 20, n: int = 14) -> pd.DataFrame:
    """Classic indicators for one symbol, for plots: ``close``, ``sma`` and ``ema`` (window),
    Bollinger bands ``bb_upper``/``bb_lower`` (window, 2 population stds), ``percent_b``, ``rsi``
    (Wilder, n), ``atr`` (Wilder, n), ``vwap`` (rolling, window), ``volume_ratio`` (window).

    Parameters
    ----------
    frames : aligned wide OHLCV frames by field (``open, high, low, close, volume``).
    symbol : a column of those frames.

    Raises
    ------
    KeyError
        ``symbol`` is not in the frames.
    """
    if symbol not in frames["close"].columns:
        raise KeyError(f"symbol {symbol!r} not in the frames")
    h, lo, c, v = (frames[f][symbol].to_numpy(dtype="float64") for f in ("high", "low", "close", "volume"))
    sma = kernels.sma(c, window)
    sd = kernels.rolling_std(c, window, ddof=0)
    pb, _ = kernels.bollinger(c, window, 2.0)
    return pd.DataFrame(
        {
            "close": c,
            "sma": sma,
            "ema": kernels.ema(c, window),
            "bb_upper": sma + 2 * sd,
            "bb_lower": sma - 2 * sd,
            "percent_b": pb,
            "rsi": kernels.rsi_wilder(c, n),
            "atr": kernels.atr_wilder(h, lo, c, n),
            "vwap": kernels.rolling_vwap(h, lo, c, v, window),
            "volume_ratio": kernels.volume_ratio(v, window),
        },
        index=frames["close"].index,
    )

