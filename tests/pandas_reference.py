"""Plain pandas references for the feature kernels (the kit's first, pandas-only implementation).

Used by the tests as independent references and by benchmarks/ as the speed baseline. Not part of
the package: ``kit.features`` is built on the numba kernels of ``kit.features.kernels``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRADING_DAYS = 252
DMN_RETURN_HORIZONS = (1, 21, 63, 126, 252)
DMN_MACD_PAIRS = ((8, 24), (16, 48), (32, 96))
VOL_SPAN = 60


def daily_returns(close: pd.DataFrame) -> pd.DataFrame:
    """Simple daily returns ``close_t / close_{t-1} - 1`` of a ``(T, N)`` frame of adjusted closes.

    NaN where either price is missing (no filling across gaps).
    """
    return close / close.shift(1) - 1.0


def ex_ante_vol(returns: pd.DataFrame, span: int = VOL_SPAN, min_periods: int = 20, annualise: bool = True) -> pd.DataFrame:
    """Ex-ante volatility: EWM standard deviation of daily returns (pandas ``ewm(span).std()``,
    ``adjust=True``, bias-corrected), known at the close of day t.

    Parameters
    ----------
    returns : (T, N) DataFrame of simple daily returns.
    span : EWM span in days (default 60, as in Lim et al. 2019).
    min_periods : valid returns needed before a value is given (default 20); earlier values are NaN.
    annualise : multiply by sqrt(252) (default True). The kit's ``ex_ante_vol`` is annualised unless
        stated; ``target_vol`` is annualised too, so their ratio is unit-free.

    Returns
    -------
    (T, N) DataFrame, float64. A constant price gives 0.0 (callers must not divide by it unguarded).
    """
    vol = returns.ewm(span=span, min_periods=min_periods, adjust=True).std()
    return vol * np.sqrt(TRADING_DAYS) if annualise else vol


def normalised_returns(close: pd.DataFrame, k: int, daily_vol: pd.DataFrame) -> pd.DataFrame:
    """Volatility-normalised return over k days: ``(close_t / close_{t-k} - 1) / (sigma_t * sqrt(k))``.

    ``daily_vol`` is the *daily* (not annualised) ex-ante volatility ``sigma_t``. Lim et al. (2019), eq. 9
    inputs. Zero volatility gives NaN (undefined), never inf.
    """
    ret_k = close / close.shift(k) - 1.0
    denom = daily_vol * np.sqrt(k)
    return ret_k / denom.where(denom > 0)


def macd_signal(close: pd.DataFrame, short: int, long: int, price_window: int = 63, signal_window: int = 252) -> pd.DataFrame:
    """Normalised MACD of Baz et al. (2015), as used by the Deep Momentum Network.

    ``m(S)`` is the EWM average of price with half-life ``ln(0.5) / ln(1 - 1/S)``;
    ``q_t = (m_t(S) - m_t(L)) / std_63(price)_t``; ``Y_t = q_t / std_252(q)_t`` (rolling sample std,
    full windows required). Returns a ``(T, N)`` frame; NaN until 63 + 252 - 1 valid prices exist.
    """

    def ewma(span_s: int) -> pd.DataFrame:
        halflife = np.log(0.5) / np.log(1.0 - 1.0 / span_s)
        return close.ewm(halflife=halflife, adjust=True, min_periods=1).mean()

    price_std = close.rolling(price_window, min_periods=price_window).std()
    q = (ewma(short) - ewma(long)) / price_std.where(price_std > 0)
    q_std = q.rolling(signal_window, min_periods=signal_window).std()
    return q / q_std.where(q_std > 0)


def dmn_features(close: pd.DataFrame, vol_span: int = VOL_SPAN) -> dict[str, pd.DataFrame]:
    """The eight DMN inputs for a ``(T, N)`` frame of adjusted closes.

    Returns
    -------
    dict name -> (T, N) DataFrame, in the order ``ret_norm_1, ret_norm_21, ret_norm_63, ret_norm_126,
    ret_norm_252, macd_8_24, macd_16_48, macd_32_96``.
    """
    rets = daily_returns(close)
    daily_vol = ex_ante_vol(rets, span=vol_span, annualise=False)
    out: dict[str, pd.DataFrame] = {}
    for k in DMN_RETURN_HORIZONS:
        out[f"ret_norm_{k}"] = normalised_returns(close, k, daily_vol)
    for short, long_ in DMN_MACD_PAIRS:
        out[f"macd_{short}_{long_}"] = macd_signal(close, short, long_)
    return out


def rsi(close: pd.DataFrame, n: int = 14) -> pd.DataFrame:
    """Wilder RSI with pandas ewm(alpha=1/n, adjust=False); 50 where gain and loss are both 0."""
    d = close.diff()
    gain = d.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-d).clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    out = 100 - 100 / (1 + gain / loss)
    out = out.mask((loss == 0) & (gain > 0), 100.0)
    return out.mask((loss == 0) & (gain == 0), 50.0)


def ldtm_features(o, h, lo, c, v) -> dict[str, pd.DataFrame]:
    """The 11 LDTM inputs with pandas operations only."""
    out = {"open": o, "high": h, "low": lo, "close": c, "volume": v}
    out["log_ret_1"] = np.log(c / c.shift(1))
    out["log_ret_5"] = np.log(c / c.shift(5))
    out["rsi_14"] = rsi(c, 14)
    for w in (5, 10, 20):
        out[f"ma_ratio_{w}"] = c / c.rolling(w).mean()
    return out


def atr(h, lo, c, n: int = 14) -> pd.DataFrame:
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()]).groupby(level=0).max()
    tr = tr.reindex(c.index)
    return tr.ewm(alpha=1 / n, adjust=False, min_periods=n).mean()


def bollinger(c, window=20, k=2.0):
    m = c.rolling(window).mean()
    s = c.rolling(window).std(ddof=0)
    return (c - (m - k * s)) / (2 * k * s).where(s > 0), (2 * k * s) / m


def rolling_vwap(h, lo, c, v, window=20):
    tp = (h + lo + c) / 3
    return (tp * v).rolling(window).sum() / v.rolling(window).sum()


def volume_ratio(v, window=20):
    return v / v.rolling(window).mean()


def zscore(x, window=20):
    sd = x.rolling(window).std()
    return (x - x.rolling(window).mean()) / sd.where(sd > 0)
