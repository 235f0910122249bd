"""Named feature sets, targets and windowing on labelled frames, built on :mod:`kit.kernels`.

Frames are wide ``(T, N)`` (index = dates, columns = symbols). Every feature at date t uses prices up
to and including t only; every target at date t uses prices after t only. NaN stays NaN: before a
listing, after a delisting and wherever a window lacks data. Nothing is forward- or back-filled.

Feature sets
------------
``dmn``: the Deep Momentum Network inputs (Lim, Zohren & Roberts, 2019, section 4.1):
volatility-normalised returns ``r_{t-k,t} / (sigma_t sqrt(k))`` for k in 1, 21, 63, 126, 252 with the
ex-ante daily volatility ``sigma_t`` (EWM std of daily returns, span 60), and the MACD indicators of
Baz et al. (2015) for (8, 24), (16, 48), (32, 96).

``ldtm``: the 11 per-ticker inputs of seed 003: open, high, low, close, volume, log returns over 1
and 5 days, RSI-14 (Wilder), close over its 5-, 10- and 20-day simple moving averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import kernels

__all__ = [
    "TRADING_DAYS",
    "DMN_RETURN_HORIZONS",
    "DMN_MACD_PAIRS",
    "FEATURE_SETS",
    "FeatureArray",
    "daily_returns",
    "ex_ante_vol",
    "normalised_returns",
    "macd_signal",
    "dmn_features",
    "feature_set",
    "next_day_target",
    "forward_returns",
    "stack_features",
    "sliding_windows",
    "make_samples",
    "indicators",
]

TRADING_DAYS = 252
DMN_RETURN_HORIZONS = kernels.DMN_RETURN_HORIZONS
DMN_MACD_PAIRS = kernels.DMN_MACD_PAIRS
VOL_SPAN = 60
FEATURE_SETS = {"dmn": kernels.DMN_NAMES, "ldtm": kernels.LDTM_NAMES}
LDTM_FIELDS = ("open", "high", "low", "close", "volume")


def _like(values: np.ndarray, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(values, index=frame.index, columns=frame.columns)


def daily_returns(close: pd.DataFrame) -> pd.DataFrame:
    """Simple daily returns ``close_t / close_{t-1} - 1`` of a ``(T, N)`` frame (NaN across gaps)."""
    return _like(kernels.simple_returns(close.to_numpy(dtype="float64"), 1), close)


def ex_ante_vol(returns: pd.DataFrame, span: int = VOL_SPAN, min_periods: int = 20, annualise: bool = True) -> pd.DataFrame:
    """Ex-ante volatility: EWM std (span 60, ``adjust=True``, bias-corrected, as pandas) of daily
    returns up to t; annualised with sqrt(252) unless ``annualise=False``. NaN until
    ``min_periods`` valid returns; 0.0 for a constant price. ``(T, N)`` DataFrame."""
    return _like(kernels.ex_ante_vol(returns.to_numpy(dtype="float64"), span, min_periods, annualise), returns)


def normalised_returns(close: pd.DataFrame, k: int, daily_vol: pd.DataFrame) -> pd.DataFrame:
    """``(close_t / close_{t-k} - 1) / (sigma_t * sqrt(k))`` with the daily ex-ante volatility;
    NaN where it is zero (never inf)."""
    return _like(kernels.vol_normalised_returns(close.to_numpy(dtype="float64"), k, daily_vol.to_numpy(dtype="float64")), close)


def macd_signal(close: pd.DataFrame, short: int, long: int, price_window: int = 63, signal_window: int = 252) -> pd.DataFrame:
    """Normalised MACD of Baz et al. (2015); see :func:`kit.kernels.macd_baz`."""
    return _like(kernels.macd_baz(close.to_numpy(dtype="float64"), short, long, price_window, signal_window), close)


@dataclass
class FeatureArray:
    """Features as one ``(T, N, F)`` float64 array with its labels.

    Attributes: ``values`` ``(T, N, F)``, ``names`` (F feature names), ``index`` (T dates),
    ``columns`` (N symbols).
    """

    values: np.ndarray
    names: list
    index: pd.DatetimeIndex
    columns: pd.Index

    def to_dict(self) -> dict[str, pd.DataFrame]:
        """name -> ``(T, N)`` DataFrame."""
        return {n: pd.DataFrame(self.values[:, :, i], index=self.index, columns=self.columns) for i, n in enumerate(self.names)}

    def to_frame(self) -> pd.DataFrame:
        """Tidy long frame: one row per (date, symbol), one column per feature."""
        T, N, F = self.values.shape
        idx = pd.MultiIndex.from_product([self.index, self.columns], names=["date", "symbol"])
        return pd.DataFrame(self.values.reshape(T * N, F), index=idx, columns=self.names)

    def select(self, names) -> FeatureArray:
        """A subset of the features, in the given order."""
        pos = [self.names.index(n) for n in names]
        return FeatureArray(self.values[:, :, pos], list(names), self.index, self.columns)


def feature_set(name: str, frames: dict[str, pd.DataFrame] | pd.DataFrame) -> FeatureArray:
    """Compute a named feature set.

    Parameters
    ----------
    name : ``"dmn"`` (needs ``close``) or ``"ldtm"`` (needs ``open, high, low, close, volume``).
    frames : dict of aligned ``(T, N)`` frames by field (e.g. :func:`kit.data.wide_fields`), or a
        single close frame for ``dmn``.

    Returns
    -------
    FeatureArray with ``values`` ``(T, N, F)`` float64.

    Raises
    ------
    ValueError
        Unknown set name, missing field, or frames not aligned.
    """
    if isinstance(frames, pd.DataFrame):
        frames = {"close": frames}
    if name not in FEATURE_SETS:
        raise ValueError(f"feature set {name!r} is unknown; known: {sorted(FEATURE_SETS)}")
    need = ("close",) if name == "dmn" else LDTM_FIELDS
    missing = [f for f in need if f not in frames]
    if missing:
        raise ValueError(f"feature set {name!r} needs fields {list(need)}; missing {missing}")
    ref = frames["close"]
    for f in need:
        if not (frames[f].index.equals(ref.index) and frames[f].columns.equals(ref.columns)):
            raise ValueError(f"field {f!r} is not aligned with 'close' (same dates and symbols needed)")
    arrays = [np.ascontiguousarray(frames[f].to_numpy(dtype="float64")) for f in need]
    values = kernels.dmn_batch(arrays[0]) if name == "dmn" else kernels.ldtm_batch(*arrays)
    return FeatureArray(values, list(FEATURE_SETS[name]), ref.index, ref.columns)


def dmn_features(close: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The eight DMN inputs as name -> ``(T, N)`` DataFrame (order of ``FEATURE_SETS['dmn']``)."""
    return feature_set("dmn", close).to_dict()


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


def stack_features(features: dict[str, pd.DataFrame]) -> tuple[np.ndarray, list[str]]:
    """Stack named ``(T, N)`` frames into one ``(T, N, F)`` float32 array and its feature names.

    Raises
    ------
    ValueError
        The frames are not aligned on the same index and columns (names the first that differs).
    """
    names = list(features)
    first = features[names[0]]
    for name in names[1:]:
        f = features[name]
        if not (f.index.equals(first.index) and f.columns.equals(first.columns)):
            raise ValueError(f"feature {name!r} is not aligned with {names[0]!r}")
    arr = np.stack([features[n].to_numpy(dtype="float64") for n in names], axis=-1).astype(np.float32)
    return arr, names


def sliding_windows(values: np.ndarray, lookback: int) -> np.ndarray:
    """All windows of ``lookback`` dates as a read-only **view** (no copy).

    ``values`` ``(T, N, F)`` -> ``(T - lookback + 1, N, lookback, F)``; window ``w`` covers dates
    ``w .. w + lookback - 1`` and belongs to decision date ``w + lookback - 1``.
    """
    if values.ndim != 3:
        raise ValueError(f"values must be (T, N, F), got shape {values.shape}")
    if not 1 <= lookback <= values.shape[0]:
        raise ValueError(f"lookback must be in [1, T={values.shape[0]}], got {lookback}")
    win = np.lib.stride_tricks.sliding_window_view(values, lookback, axis=0)  # (W, N, F, L)
    return win.transpose(0, 1, 3, 2)


def make_samples(values: np.ndarray, targets: np.ndarray, lookback: int, start: int = 0, end: int | None = None):
    """Training samples ``(samples, lookback, F)`` for decision dates in ``[start, end)`` whose window
    and target are all finite.

    Parameters
    ----------
    values : ``(T, N, F)`` features; targets : ``(T, N)`` or ``(T, N, H)`` targets at the decision date.

    Returns
    -------
    X ``(S, lookback, F)``, y ``(S,)`` or ``(S, H)``, and ``where`` ``(S, 2)`` int64 (date index,
    symbol index) of each sample. X is a gathered copy (a selection cannot be a view).
    """
    T = values.shape[0]
    end = T if end is None else end
    win = sliding_windows(values, lookback)
    first = max(start, lookback - 1)
    dates = np.arange(first, end)
    tgt = targets if targets.ndim == 3 else targets[:, :, None]
    ok_win = np.isfinite(values).all(axis=2)  # (T, N)
    cum = np.concatenate([np.zeros((1, values.shape[1]), np.int64), np.cumsum(~ok_win, axis=0)])
    full = (cum[dates + 1] - cum[dates + 1 - lookback]) == 0  # no bad date inside the window
    ok = full & np.isfinite(tgt[dates]).all(axis=2)
    di, si = np.nonzero(ok)
    X = win[dates[di] - lookback + 1, si]
    y = tgt[dates[di], si]
    return np.ascontiguousarray(X), (y[:, 0] if targets.ndim == 2 else y), np.stack([dates[di], si], axis=1)


def indicators(frames: dict[str, pd.DataFrame], symbol: str, window: int = 20, n: int = 14) -> pd.DataFrame:
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
