"""Numba kernels on ``(T, N)`` float64 arrays (time by symbols), NaN-aware, parallel over symbols.

This module knows arrays only; :mod:`kit.features.sets` and :mod:`kit.features.indicators` put labels
on them.

Every kernel is built from a few *online primitives* that update a per-symbol state one bar at a
time. The batch kernels loop those primitives over time (in parallel over symbols) and
:mod:`kit.features.streaming` calls the very same primitives once per bar, so streaming and batch results are
identical by construction, not merely close.

Primitives and their state blocks (columns of a 2-D ``float64`` state array ``S[width, N]``, one
column per symbol, each block starting at row offset ``o``; the slot-major layout lets one bar read
each slot of many symbols contiguously):

* EWM mean, ``EWM_MEAN_WIDTH`` slots: the exponentially weighted mean of pandas
  (``Series.ewm(...).mean()``) with its ``adjust`` and ``ignore_na=False`` semantics: a NaN keeps its
  place in the decay, observations start the average, a constant series stays exactly constant.
* EWM variance, ``EWM_VAR_WIDTH`` slots: pandas' ``ewm(...).var(bias=False)`` (bias-corrected with
  ``(sum w)^2 / ((sum w)^2 - sum w^2)``).
* Rolling window of length w, ``roll_width(w)`` slots: the last w rows (NaN rows included) in a
  ring buffer with Welford's running mean and sum of squared deviations over the valid ones, as
  pandas' ``rolling(w, min_periods=m)``; a window of identical values has variance exactly 0.
* Lag buffer of depth L, ``lag_width(L)`` slots: the last L + 1 values, for ``x_{t-k}`` with k <= L.

``min_periods`` rules: EWM outputs need ``min_periods`` valid observations since the start (pandas
counts them from the first row; default here 1 for means); rolling outputs need ``min_periods``
valid values inside the window (default: the full window); a lag output is NaN when either end is
NaN. Nothing is forward-filled.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..conventions import DMN_MACD_PAIRS, DMN_RETURN_HORIZONS, TRADING_DAYS, VOL_MIN_PERIODS, VOL_SPAN

__all__ = [
    "ewm_alpha",
    "simple_returns",
    "log_returns",
    "ewm_mean",
    "ewm_std",
    "ex_ante_vol",
    "vol_normalised_returns",
    "rolling_mean",
    "rolling_std",
    "rolling_zscore",
    "macd_baz",
    "rsi_wilder",
    "rsi_ewm",
    "sma",
    "ema",
    "ma_ratio",
    "bollinger",
    "atr_wilder",
    "atr_ewm",
    "rolling_vwap",
    "volume_ratio",
    "EWM_MEAN_WIDTH",
    "EWM_VAR_WIDTH",
    "roll_width",
    "rsum_width",
    "lag_width",
]

EWM_MEAN_WIDTH = 3  # weighted, old_wt, nobs
EWM_VAR_WIDTH = 6  # mean, cov, sum_wt, sum_wt2, old_wt, nobs
_ROLL_HEAD = 7  # pos, filled, nobs, mean, ssqdm, n_same, prev


def roll_width(window: int) -> int:
    """State slots of a rolling block of ``window`` rows."""
    return _ROLL_HEAD + window


def lag_width(depth: int) -> int:
    """State slots of a lag buffer able to return ``x_{t-k}`` for ``k <= depth``."""
    return 2 + depth + 1


def ewm_alpha(span: float | None = None, halflife: float | None = None, alpha: float | None = None, com: float | None = None) -> float:
    """Smoothing factor from exactly one of pandas' parametrisations.

    ``alpha = 2 / (span + 1)``; ``alpha = 1 - exp(ln(0.5) / halflife)``; ``alpha = 1 / (1 + com)``.

    Raises
    ------
    ValueError
        Not exactly one given, or a value out of range (named).
    """
    given = [k for k, v in {"span": span, "halflife": halflife, "alpha": alpha, "com": com}.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of span, halflife, alpha, com (got {given})")
    if span is not None:
        if span < 1:
            raise ValueError(f"span must be >= 1, got {span}")
        return 2.0 / (span + 1.0)
    if halflife is not None:
        if halflife <= 0:
            raise ValueError(f"halflife must be > 0, got {halflife}")
        return 1.0 - math.exp(math.log(0.5) / halflife)
    if com is not None:
        if com < 0:
            raise ValueError(f"com must be >= 0, got {com}")
        return 1.0 / (1.0 + com)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return float(alpha)


# --------------------------------------------------------------------------------------------
# online primitives (shared with kit.features.streaming)
# --------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def ewm_mean_init(S, j, o):
    """Reset an EWM-mean block: no observation yet."""
    S[o, j] = np.nan
    S[o + 1, j] = 1.0
    S[o + 2, j] = 0.0


@njit(cache=True, inline="always")
def ewm_mean_push(S, j, o, x, alpha, adjust):
    """Feed one value (NaN allowed) to an EWM-mean block (pandas ``ewm`` with ``ignore_na=False``)."""
    weighted = S[o, j]
    old_wt = S[o + 1, j]
    is_obs = not np.isnan(x)
    if is_obs:
        S[o + 2, j] += 1.0
    if not np.isnan(weighted):
        old_wt *= 1.0 - alpha
        if is_obs:
            new_wt = 1.0 if adjust else alpha
            if not adjust and alpha == 0.5:
                # pandas quirk, kept for fidelity: with com == 1 (alpha = 0.5) and adjust=False it
                # renormalises the new weight after a NaN gap (new_wt = 1 - old_wt); no-op without gaps
                new_wt = 1.0 - old_wt
            if weighted != x:
                weighted = (old_wt * weighted + new_wt * x) / (old_wt + new_wt)
            if adjust:
                old_wt += new_wt
            else:
                old_wt = 1.0
    elif is_obs:
        weighted = x
    S[o, j] = weighted
    S[o + 1, j] = old_wt


@njit(cache=True, inline="always")
def ewm_mean_value(S, j, o, min_periods):
    """Current EWM mean, NaN before ``min_periods`` observations."""
    return S[o, j] if S[o + 2, j] >= min_periods else np.nan


@njit(cache=True, inline="always")
def ewm_var_init(S, j, o):
    """Reset an EWM-variance block."""
    S[o, j] = np.nan
    S[o + 1, j] = 0.0
    S[o + 2, j] = 1.0
    S[o + 3, j] = 1.0
    S[o + 4, j] = 1.0
    S[o + 5, j] = 0.0


@njit(cache=True, inline="always")
def ewm_var_push(S, j, o, x, alpha, adjust):
    """Feed one value to an EWM-variance block (pandas ``ewmcov`` of x with itself, ``ignore_na=False``)."""
    mean = S[o, j]
    is_obs = not np.isnan(x)
    if is_obs:
        S[o + 5, j] += 1.0
    if not np.isnan(mean):
        factor = 1.0 - alpha
        new_wt = 1.0 if adjust else alpha
        cov = S[o + 1, j]
        sum_wt = S[o + 2, j] * factor
        sum_wt2 = S[o + 3, j] * (factor * factor)
        old_wt = S[o + 4, j] * factor
        if is_obs:
            old_mean = mean
            if mean != x:
                mean = (old_wt * old_mean + new_wt * x) / (old_wt + new_wt)
            cov = (old_wt * (cov + (old_mean - mean) * (old_mean - mean)) + new_wt * (x - mean) * (x - mean)) / (old_wt + new_wt)
            sum_wt += new_wt
            sum_wt2 += new_wt * new_wt
            old_wt += new_wt
            if not adjust:
                sum_wt /= old_wt
                sum_wt2 /= old_wt * old_wt
                old_wt = 1.0
        S[o, j] = mean
        S[o + 1, j] = cov
        S[o + 2, j] = sum_wt
        S[o + 3, j] = sum_wt2
        S[o + 4, j] = old_wt
    elif is_obs:
        S[o, j] = x


@njit(cache=True, inline="always")
def ewm_var_value(S, j, o, min_periods):
    """Current bias-corrected EWM variance (>= 0), NaN before ``max(min_periods, 2)`` observations
    or while the correction is undefined."""
    if S[o + 5, j] < min_periods:
        return np.nan
    num = S[o + 2, j] * S[o + 2, j]
    den = num - S[o + 3, j]
    if den <= 0.0:
        return np.nan
    v = num / den * S[o + 1, j]
    return v if v > 0.0 else 0.0


@njit(cache=True, inline="always")
def roll_init(S, j, o, window):
    """Reset a rolling block: empty window."""
    for k in range(_ROLL_HEAD + window):
        S[o + k, j] = 0.0
    S[o + 6, j] = np.nan
    for k in range(window):
        S[o + _ROLL_HEAD + k, j] = np.nan


@njit(cache=True, inline="always")
def _roll_add(S, j, o, x):
    nobs = S[o + 2, j] + 1.0
    if x == S[o + 6, j]:
        S[o + 5, j] += 1.0
    else:
        S[o + 5, j] = 1.0
    S[o + 6, j] = x
    mean = S[o + 3, j]
    delta = x - mean
    mean += delta / nobs
    S[o + 4, j] += delta * (x - mean)
    S[o + 3, j] = mean
    S[o + 2, j] = nobs


@njit(cache=True, inline="always")
def _roll_remove(S, j, o, x):
    nobs = S[o + 2, j] - 1.0
    if nobs > 0:
        mean = S[o + 3, j]
        delta = x - mean
        mean -= delta / nobs
        S[o + 4, j] -= delta * (x - mean)
        S[o + 3, j] = mean
    else:
        S[o + 3, j] = 0.0
        S[o + 4, j] = 0.0
    S[o + 2, j] = nobs


@njit(cache=True, inline="always")
def roll_push(S, j, o, window, x):
    """Append one row (NaN allowed) to a rolling block, dropping the row that leaves the window."""
    pos = int(S[o, j])
    slot = o + _ROLL_HEAD + pos
    pos += 1
    S[o, j] = pos if pos < window else 0
    if S[o + 1, j] >= window:
        old = S[slot, j]
        S[slot, j] = x
        if not np.isnan(old):
            _roll_remove(S, j, o, old)
    else:
        S[o + 1, j] += 1.0
        S[slot, j] = x
    if not np.isnan(x):
        _roll_add(S, j, o, x)


@njit(cache=True, inline="always")
def roll_mean_value(S, j, o, min_periods):
    """Mean of the valid values in the window, NaN with fewer than ``min_periods`` of them."""
    nobs = S[o + 2, j]
    if nobs < min_periods or nobs == 0:
        return np.nan
    if S[o + 5, j] >= nobs:
        return S[o + 6, j]  # every valid value in the window is the same
    return S[o + 3, j]


@njit(cache=True, inline="always")
def roll_var_value(S, j, o, min_periods, ddof):
    """Variance (``ddof`` 0 or 1) of the valid values in the window; exactly 0 for a window of equal
    values; NaN with fewer than ``min_periods`` values or ``nobs <= ddof``."""
    nobs = S[o + 2, j]
    if nobs < min_periods or nobs <= ddof:
        return np.nan
    if nobs == 1.0 or S[o + 5, j] >= nobs:
        return 0.0
    v = S[o + 4, j] / (nobs - ddof)
    return v if v > 0.0 else 0.0


_RSUM_HEAD = 7  # pos, filled, nobs, sum, compensation, n_same, prev


def rsum_width(window: int) -> int:
    """State slots of a rolling-sum block of ``window`` rows."""
    return _RSUM_HEAD + window


@njit(cache=True, inline="always")
def rsum_init(S, j, o, window):
    """Reset a rolling-sum block (Kahan-compensated running sum, as pandas' rolling mean)."""
    for k in range(_RSUM_HEAD):
        S[o + k, j] = 0.0
    S[o + 6, j] = np.nan
    for k in range(window):
        S[o + _RSUM_HEAD + k, j] = np.nan


@njit(cache=True, inline="always")
def _rsum_add(S, j, o, x):
    S[o + 2, j] += 1.0
    if x == S[o + 6, j]:
        S[o + 5, j] += 1.0
    else:
        S[o + 5, j] = 1.0
    S[o + 6, j] = x
    y = x - S[o + 4, j]
    t = S[o + 3, j] + y
    S[o + 4, j] = t - S[o + 3, j] - y
    S[o + 3, j] = t


@njit(cache=True, inline="always")
def _rsum_remove(S, j, o, x):
    S[o + 2, j] -= 1.0
    y = -x - S[o + 4, j]
    t = S[o + 3, j] + y
    S[o + 4, j] = t - S[o + 3, j] - y
    S[o + 3, j] = t


@njit(cache=True, inline="always")
def rsum_push(S, j, o, window, x):
    """Append one row (NaN allowed) to a rolling-sum block."""
    pos = int(S[o, j])
    slot = o + _RSUM_HEAD + pos
    pos += 1
    S[o, j] = pos if pos < window else 0
    if S[o + 1, j] >= window:
        old = S[slot, j]
        if not np.isnan(old):
            _rsum_remove(S, j, o, old)
    else:
        S[o + 1, j] += 1.0
    S[slot, j] = x
    if not np.isnan(x):
        _rsum_add(S, j, o, x)


@njit(cache=True, inline="always")
def rsum_mean_value(S, j, o, min_periods):
    """Mean of the valid values in the window (pandas ``rolling().mean()``), NaN with fewer than
    ``min_periods`` of them; the value itself for a window of equal values."""
    nobs = S[o + 2, j]
    if nobs < min_periods or nobs == 0:
        return np.nan
    if S[o + 5, j] >= nobs:
        return S[o + 6, j]
    return S[o + 3, j] / nobs


@njit(cache=True, inline="always")
def lag_init(S, j, o, depth):
    """Reset a lag buffer."""
    S[o, j] = 0.0
    S[o + 1, j] = 0.0
    for k in range(depth + 1):
        S[o + 2 + k, j] = np.nan


@njit(cache=True, inline="always")
def lag_push(S, j, o, depth, x):
    """Append the current value to a lag buffer of ``depth``."""
    pos = int(S[o, j])
    S[o + 2 + pos, j] = x
    pos += 1
    S[o, j] = pos if pos <= depth else 0
    S[o + 1, j] += 1.0


@njit(cache=True, inline="always")
def lag_get(S, j, o, depth, k):
    """``x_{t-k}`` after the push of ``x_t`` (NaN when fewer than k + 1 values were pushed)."""
    if S[o + 1, j] < k + 1:
        return np.nan
    pos = int(S[o, j]) - 1 - k
    if pos < 0:
        pos += depth + 1
    return S[o + 2 + pos, j]


# --------------------------------------------------------------------------------------------
# batch kernels
# --------------------------------------------------------------------------------------------


def _as2d(x, name="x") -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return np.ascontiguousarray(a[:, None]), True
    if a.ndim != 2:
        raise ValueError(f"{name} must be (T,) or (T, N), got shape {a.shape}")
    return a, False


def _out(a, squeeze):
    return a[:, 0] if squeeze else a


def _check_window(window, name="window"):
    if int(window) != window or window < 1:
        raise ValueError(f"{name} must be a positive integer, got {window!r}")


@njit(cache=True, parallel=True)
def _returns_nb(x, k, log):
    T, N = x.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        for t in range(k, T):
            a = x[t - k, j]
            b = x[t, j]
            if log:
                out[t, j] = math.log(b / a) if (a > 0 and b > 0) else np.nan
            else:
                out[t, j] = b / a - 1.0
    return out


def simple_returns(close, k: int = 1) -> np.ndarray:
    """Simple returns over k rows: ``r_{t-k,t} = x_t / x_{t-k} - 1``.

    Shapes: ``(T, N)`` or ``(T,)`` float64 in and out. NaN where either price is NaN and for the
    first k rows (no ``min_periods``: both ends are needed). Prices are not filled across gaps.
    """
    _check_window(k, "k")
    x, sq = _as2d(close, "close")
    return _out(_returns_nb(x, int(k), False), sq)


def log_returns(close, k: int = 1) -> np.ndarray:
    """Log returns over k rows: ``log(x_t / x_{t-k})``; NaN where either price is NaN or not positive."""
    _check_window(k, "k")
    x, sq = _as2d(close, "close")
    return _out(_returns_nb(x, int(k), True), sq)


@njit(cache=True, parallel=True)
def _ewm_mean_nb(x, alpha, adjust, min_periods):
    T, N = x.shape
    out = np.empty((T, N))
    for j in prange(N):
        S = np.empty((EWM_MEAN_WIDTH, 1))
        ewm_mean_init(S, 0, 0)
        for t in range(T):
            ewm_mean_push(S, 0, 0, x[t, j], alpha, adjust)
            out[t, j] = ewm_mean_value(S, 0, 0, min_periods)
    return out


@njit(cache=True, parallel=True)
def _ewm_std_nb(x, alpha, adjust, min_periods, scale):
    T, N = x.shape
    out = np.empty((T, N))
    for j in prange(N):
        S = np.empty((EWM_VAR_WIDTH, 1))
        ewm_var_init(S, 0, 0)
        for t in range(T):
            ewm_var_push(S, 0, 0, x[t, j], alpha, adjust)
            out[t, j] = math.sqrt(ewm_var_value(S, 0, 0, min_periods)) * scale
    return out


def ewm_mean(x, *, span=None, halflife=None, alpha=None, com=None, adjust: bool = True, min_periods: int = 1) -> np.ndarray:
    """Exponentially weighted mean with pandas' semantics (``ewm(..., adjust, ignore_na=False).mean()``).

    ``adjust=True``: ``y_t = sum_i w_i x_{t-i} / sum_i w_i`` with ``w_i = (1 - alpha)^i`` over valid
    values (a NaN keeps its place in the decay); ``adjust=False``: ``y_t = (1 - alpha) y_{t-1} +
    alpha x_t``. Output NaN until ``min_periods`` valid values have been seen. ``(T, N)`` float64.
    """
    a = ewm_alpha(span, halflife, alpha, com)
    v, sq = _as2d(x)
    return _out(_ewm_mean_nb(v, a, bool(adjust), max(int(min_periods), 1)), sq)


def ewm_std(x, *, span=None, halflife=None, alpha=None, com=None, adjust: bool = True, min_periods: int = 1) -> np.ndarray:
    """Bias-corrected exponentially weighted standard deviation, as pandas ``ewm(...).std()``.

    The weighted variance is multiplied by ``(sum w)^2 / ((sum w)^2 - sum w^2)``; the result is NaN
    until ``max(min_periods, 2)`` valid values (the correction needs two), and exactly 0 for a
    constant series. ``(T, N)`` float64.
    """
    a = ewm_alpha(span, halflife, alpha, com)
    v, sq = _as2d(x)
    return _out(_ewm_std_nb(v, a, bool(adjust), max(int(min_periods), 1), 1.0), sq)


def ex_ante_vol(returns, span: int = VOL_SPAN, min_periods: int = VOL_MIN_PERIODS, annualise: bool = True,
                bars_per_year: float = TRADING_DAYS) -> np.ndarray:
    """Ex-ante volatility ``sigma_t``: EWM std (span 60, ``adjust=True``) of per-bar returns up to t,
    times ``sqrt(bars_per_year)`` when ``annualise`` (252 for daily bars; Lim, Zohren & Roberts, 2019,
    section 4.1). NaN until ``min_periods`` valid returns. ``(T, N)`` float64."""
    a = ewm_alpha(span=span)
    v, sq = _as2d(returns, "returns")
    if not bars_per_year > 0:
        raise ValueError(f"bars_per_year must be > 0, got {bars_per_year!r}")
    return _out(_ewm_std_nb(v, a, True, max(int(min_periods), 1), math.sqrt(bars_per_year) if annualise else 1.0), sq)


def vol_normalised_returns(close, k: int, daily_vol) -> np.ndarray:
    """``r_{t-k,t} / (sigma_t * sqrt(k))`` with the daily (not annualised) ex-ante volatility
    ``sigma_t`` (Lim et al., 2019, the DMN inputs). NaN where sigma is 0 or NaN."""
    r = simple_returns(close, k)
    s = np.asarray(daily_vol, dtype=np.float64) * math.sqrt(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, r / s, np.nan)


@njit(cache=True, parallel=True)
def _rolling_nb(x, window, min_periods, what, ddof):
    # what: 0 mean, 1 std, 2 z-score
    T, N = x.shape
    out = np.empty((T, N))
    for j in prange(N):
        S = np.empty((_ROLL_HEAD + window, 1))
        roll_init(S, 0, 0, window)
        if what == 0:
            rsum_init(S, 0, 0, window)
        for t in range(T):
            if what == 0:
                rsum_push(S, 0, 0, window, x[t, j])
                out[t, j] = rsum_mean_value(S, 0, 0, min_periods)
                continue
            roll_push(S, 0, 0, window, x[t, j])
            if what == 1:
                out[t, j] = math.sqrt(roll_var_value(S, 0, 0, min_periods, ddof))
            else:
                sd = math.sqrt(roll_var_value(S, 0, 0, min_periods, ddof))
                out[t, j] = (x[t, j] - roll_mean_value(S, 0, 0, min_periods)) / sd if sd > 0 else np.nan
    return out


def _rolling(x, window, min_periods, what, ddof=1):
    _check_window(window)
    mp = int(window) if min_periods is None else int(min_periods)
    if not 1 <= mp <= window:
        raise ValueError(f"min_periods must be in [1, window={window}], got {min_periods}")
    v, sq = _as2d(x)
    return _out(_rolling_nb(v, int(window), mp, what, int(ddof)), sq)


def rolling_mean(x, window: int, min_periods: int | None = None) -> np.ndarray:
    """Mean of the valid values among the last ``window`` rows (pandas ``rolling(window,
    min_periods).mean()``; default ``min_periods = window``: a NaN inside the window gives NaN)."""
    return _rolling(x, window, min_periods, 0)


def rolling_std(x, window: int, min_periods: int | None = None, ddof: int = 1) -> np.ndarray:
    """Standard deviation of the valid values among the last ``window`` rows (pandas
    ``rolling(...).std(ddof)``); exactly 0 for a window of equal values."""
    return _rolling(x, window, min_periods, 1, ddof)


def rolling_zscore(x, window: int, min_periods: int | None = None) -> np.ndarray:
    """``(x_t - mean_w) / std_w`` over the last ``window`` rows (sample std); NaN where the std is 0."""
    return _rolling(x, window, min_periods, 2)


@njit(cache=True, parallel=True)
def _macd_nb(x, short, long_, price_window, signal_window):
    T, N = x.shape
    out = np.empty((T, N))
    a_s = 1.0 / short
    a_l = 1.0 / long_
    for j in prange(N):
        S = np.empty((2 * EWM_MEAN_WIDTH + 2 * _ROLL_HEAD + price_window + signal_window, 1))
        o1 = EWM_MEAN_WIDTH
        o2 = 2 * EWM_MEAN_WIDTH
        o3 = o2 + _ROLL_HEAD + price_window
        ewm_mean_init(S, 0, 0)
        ewm_mean_init(S, 0, o1)
        roll_init(S, 0, o2, price_window)
        roll_init(S, 0, o3, signal_window)
        for t in range(T):
            out[t, j] = _macd_step(S, 0, 0, x[t, j], a_s, a_l, price_window, signal_window)
    return out


@njit(cache=True, inline="always")
def _macd_step(S, j, o, price, a_s, a_l, price_window, signal_window):
    o1 = o + EWM_MEAN_WIDTH
    o2 = o + 2 * EWM_MEAN_WIDTH
    o3 = o2 + _ROLL_HEAD + price_window
    ewm_mean_push(S, j, o, price, a_s, True)
    ewm_mean_push(S, j, o1, price, a_l, True)
    roll_push(S, j, o2, price_window, price)
    sd = math.sqrt(roll_var_value(S, j, o2, price_window, 1))
    q = np.nan
    if sd > 0:
        q = (ewm_mean_value(S, j, o, 1) - ewm_mean_value(S, j, o1, 1)) / sd
    roll_push(S, j, o3, signal_window, q)
    qs = math.sqrt(roll_var_value(S, j, o3, signal_window, 1))
    return q / qs if qs > 0 else np.nan


def macd_width(price_window: int = 63, signal_window: int = 252) -> int:
    """State slots of one MACD signal."""
    return 2 * EWM_MEAN_WIDTH + 2 * _ROLL_HEAD + price_window + signal_window


def macd_baz(close, short: int, long: int, price_window: int = 63, signal_window: int = 252) -> np.ndarray:
    """Normalised MACD of Baz et al. (2015), "Dissecting Investment Strategies in the Cross Section
    and Time Series", as used by the Deep Momentum Network (Lim et al., 2019, eq. 10-11).

    ``m_t(S)`` = EWM mean of price with half-life ``ln(0.5) / ln(1 - 1/S)`` (i.e. ``alpha = 1/S``,
    ``adjust=True``); ``q_t = (m_t(S) - m_t(L)) / std_63(price)_t``; ``Y_t = q_t / std_252(q)_t``
    (sample stds over full windows). NaN until 63 + 252 - 1 valid prices; a NaN price makes the
    63- and then 252-day windows NaN until they are full of valid values again. ``(T, N)`` float64.
    """
    if not 1 <= short < long:
        raise ValueError(f"need 1 <= short < long, got short={short}, long={long}")
    v, sq = _as2d(close, "close")
    return _out(_macd_nb(v, float(short), float(long), int(price_window), int(signal_window)), sq)


@njit(cache=True, inline="always")
def _wilder_step(S, j, o, gain, loss, n):
    """RSI state: prev price handled by caller; two EWM (alpha = 1/n, adjust=False) blocks."""
    a = 1.0 / n
    ewm_mean_push(S, j, o, gain, a, False)
    ewm_mean_push(S, j, o + EWM_MEAN_WIDTH, loss, a, False)
    g = ewm_mean_value(S, j, o, n)
    lo = ewm_mean_value(S, j, o + EWM_MEAN_WIDTH, n)
    if np.isnan(g) or np.isnan(lo):
        return np.nan
    if lo == 0.0:
        return 50.0 if g == 0.0 else 100.0
    return 100.0 - 100.0 / (1.0 + g / lo)


@njit(cache=True, parallel=True)
def _rsi_nb(x, n):
    T, N = x.shape
    out = np.empty((T, N))
    for j in prange(N):
        S = np.empty((2 * EWM_MEAN_WIDTH, 1))
        ewm_mean_init(S, 0, 0)
        ewm_mean_init(S, 0, EWM_MEAN_WIDTH)
        prev = np.nan
        for t in range(T):
            d = x[t, j] - prev
            out[t, j] = _wilder_step(S, 0, 0, max(d, 0.0) if not np.isnan(d) else np.nan, max(-d, 0.0) if not np.isnan(d) else np.nan, n)
            prev = x[t, j]
    return out


def rsi_ewm(close, n: int = 14) -> np.ndarray:
    """Relative Strength Index with first-value-seeded Wilder smoothing (the ``ldtm`` feature set's
    RSI-14; not Wilder's published start, for which see :func:`rsi_wilder`).

    ``d_t = x_t - x_{t-1}``; average gain and loss are EWM means with ``alpha = 1/n``,
    ``adjust=False`` (pandas' ``ewm(alpha=1/n, adjust=False)``, seeded with the first change rather
    than a simple average of the first n); ``RSI = 100 - 100 / (1 + gain / loss)`` in [0, 100]. NaN
    until n valid changes. Zero average loss gives 100, and 50 when the average gain is zero too (a
    constant price). The seed's weight decays as ``(1 - 1/n)^t``: after 100 bars with n = 14 the two
    definitions differ by under 0.1% of the first change. ``(T, N)`` float64.
    """
    _check_window(n, "n")
    v, sq = _as2d(close, "close")
    return _out(_rsi_nb(v, float(n)), sq)


@njit(cache=True, parallel=True)
def _rsi_sma_nb(x, n):
    T, N = x.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        prev = np.nan
        k = 0
        sg = 0.0
        sl = 0.0
        for t in range(T):
            d = x[t, j] - prev
            prev = x[t, j]
            if np.isnan(d):
                continue
            g = d if d > 0 else 0.0
            lo = -d if d < 0 else 0.0
            if k < n:
                sg += g
                sl += lo
                k += 1
                if k < n:
                    continue
                sg /= n
                sl /= n
            else:
                sg = (sg * (n - 1) + g) / n
                sl = (sl * (n - 1) + lo) / n
            if sl == 0.0:
                out[t, j] = 50.0 if sg == 0.0 else 100.0
            else:
                out[t, j] = 100.0 - 100.0 / (1.0 + sg / sl)
    return out


def rsi_wilder(close, n: int = 14) -> np.ndarray:
    """Relative Strength Index as Wilder (1978, "New Concepts in Technical Trading Systems") defined it
    and StockCharts' ChartSchool publishes it.

    With ``d_t = x_t - x_{t-1}``, gains ``max(d, 0)`` and losses ``max(-d, 0)``: the first average
    gain (loss) is the simple mean of the first n gains (losses); after it
    ``avg_t = (avg_{t-1} (n - 1) + value_t) / n``; ``RSI = 100 - 100 / (1 + avg gain / avg loss)`` in
    [0, 100], first defined on the n-th change (row n of a series without gaps). A change that is NaN
    (a missing price on either side) gives NaN and leaves the averages as they were. Zero average
    loss gives 100, and 50 when the average gain is zero too. ``(T, N)`` float64.
    """
    _check_window(n, "n")
    v, sq = _as2d(close, "close")
    return _out(_rsi_sma_nb(v, float(n)), sq)


def sma(close, window: int) -> np.ndarray:
    """Simple moving average over ``window`` rows, full window required."""
    return rolling_mean(close, window)


def ema(close, span: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2 / (span + 1)``, ``adjust=False``, NaN until ``span``
    valid values (the common trading-platform convention)."""
    return ewm_mean(close, span=span, adjust=False, min_periods=span)


def ma_ratio(close, window: int) -> np.ndarray:
    """``close_t / SMA_window(close)_t`` (1.0 means at the average)."""
    x = np.asarray(close, dtype=np.float64)
    m = sma(x, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m > 0, x / m, np.nan)


def bollinger(close, window: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Bollinger %B and bandwidth (Bollinger, 2001, "Bollinger on Bollinger Bands").

    With ``m`` the SMA and ``s`` the population std (ddof 0) over ``window`` rows:
    ``%B = (x - (m - k s)) / (2 k s)``, ``bandwidth = 2 k s / m``. %B is NaN where ``s = 0``.
    Returns ``(percent_b, bandwidth)``, each ``(T, N)`` float64.
    """
    x = np.asarray(close, dtype=np.float64)
    m = sma(x, window)
    s = rolling_std(x, window, ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pb = np.where(s > 0, (x - (m - k * s)) / (2 * k * s), np.nan)
        bw = np.where(m > 0, 2 * k * s / m, np.nan)
    return pb, bw


@njit(cache=True, parallel=True)
def _atr_nb(h, lo, c, n):
    T, N = c.shape
    out = np.empty((T, N))
    a = 1.0 / n
    for j in prange(N):
        S = np.empty((EWM_MEAN_WIDTH, 1))
        ewm_mean_init(S, 0, 0)
        prev = np.nan
        for t in range(T):
            tr = h[t, j] - lo[t, j]
            if not np.isnan(prev):
                tr = max(tr, abs(h[t, j] - prev), abs(lo[t, j] - prev))
            ewm_mean_push(S, 0, 0, tr, a, False)
            out[t, j] = ewm_mean_value(S, 0, 0, n)
            prev = c[t, j]
    return out


def _hlc(high, low, close):
    h, sq = _as2d(high, "high")
    lo, _ = _as2d(low, "low")
    c, _ = _as2d(close, "close")
    if not (h.shape == lo.shape == c.shape):
        raise ValueError(f"high {h.shape}, low {lo.shape} and close {c.shape} must have the same shape")
    return h, lo, c, sq


def atr_ewm(high, low, close, n: int = 14) -> np.ndarray:
    """Average True Range with first-value-seeded smoothing (kept for comparison; the kit's ATR is
    :func:`atr_wilder`). ``TR_t = max(h - l, |h - c_{t-1}|, |l - c_{t-1}|)`` (``h - l`` on a symbol's
    first row or after a missing close); ATR = EWM mean of TR with ``alpha = 1/n``, ``adjust=False``;
    NaN until n valid TRs. ``(T, N)`` float64, price units."""
    _check_window(n, "n")
    h, lo, c, sq = _hlc(high, low, close)
    return _out(_atr_nb(h, lo, c, float(n)), sq)


@njit(cache=True, parallel=True)
def _atr_sma_nb(h, lo, c, n):
    T, N = c.shape
    out = np.full((T, N), np.nan)
    for j in prange(N):
        prev = np.nan
        k = 0
        a = 0.0
        for t in range(T):
            tr = h[t, j] - lo[t, j]
            if not np.isnan(prev):
                tr = max(tr, abs(h[t, j] - prev), abs(lo[t, j] - prev))
            prev = c[t, j]
            if np.isnan(tr):
                continue
            if k < n:
                a += tr
                k += 1
                if k < n:
                    continue
                a /= n
            else:
                a = (a * (n - 1) + tr) / n
            out[t, j] = a
    return out


def atr_wilder(high, low, close, n: int = 14) -> np.ndarray:
    """Average True Range as Wilder (1978) defined it and StockCharts' ChartSchool publishes it.

    ``TR_t = max(h_t - l_t, |h_t - c_{t-1}|, |l_t - c_{t-1}|)`` (``h - l`` on a symbol's first row or
    after a missing close); the first ATR is the simple mean of the first n TRs; after it
    ``ATR_t = (ATR_{t-1} (n - 1) + TR_t) / n``. A NaN TR gives NaN and leaves the average as it was.
    ``(T, N)`` float64, price units.
    """
    _check_window(n, "n")
    h, lo, c, sq = _hlc(high, low, close)
    return _out(_atr_sma_nb(h, lo, c, float(n)), sq)


def rolling_vwap(high, low, close, volume, window: int = 20) -> np.ndarray:
    """Rolling volume-weighted average price over ``window`` rows of the typical price
    ``(h + l + c) / 3``: ``sum(tp * v) / sum(v)``, full window required; NaN where the volume sum is 0."""
    h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in (high, low, close, volume))
    tp = (h + lo + c) / 3.0
    num = rolling_mean(tp * v, window)
    den = rolling_mean(v, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def volume_ratio(volume, window: int = 20) -> np.ndarray:
    """``volume_t / mean(volume over the last window rows)``; NaN where that mean is 0."""
    v = np.asarray(volume, dtype=np.float64)
    m = rolling_mean(v, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m > 0, v / m, np.nan)


# --------------------------------------------------------------------------------------------
# fused feature engines: one step per (symbol, bar); used by the batch feature sets and by
# kit.features.streaming, so both produce bit-identical values
# --------------------------------------------------------------------------------------------

DMN_NAMES = tuple([f"ret_norm_{k}" for k in DMN_RETURN_HORIZONS] + [f"macd_{s}_{lg}" for s, lg in DMN_MACD_PAIRS])
LDTM_NAMES = (
    "open", "high", "low", "close", "volume", "log_ret_1", "log_ret_5", "rsi_14",
    "ma_ratio_5", "ma_ratio_10", "ma_ratio_20",
)

_DMN_DEPTH = 252
_D_VOL = lag_width(_DMN_DEPTH)
_D_PRICE = _D_VOL + EWM_VAR_WIDTH
_D_PAIRS = _D_PRICE + roll_width(63)
_D_PAIR_WIDTH = 2 * EWM_MEAN_WIDTH + roll_width(252)
DMN_WIDTH = _D_PAIRS + 3 * _D_PAIR_WIDTH
_DMN_H = np.array(DMN_RETURN_HORIZONS, dtype=np.int64)
_DMN_S = np.array([s for s, _ in DMN_MACD_PAIRS], dtype=np.float64)
_DMN_L = np.array([lo for _, lo in DMN_MACD_PAIRS], dtype=np.float64)
_DMN_INV_SQRT_H = 1.0 / np.sqrt(_DMN_H.astype(np.float64))
_DMN_AS = 1.0 / _DMN_S
_DMN_AL = 1.0 / _DMN_L
_DMN_VOL_ALPHA = 2.0 / (VOL_SPAN + 1.0)
_DMN_VOL_MINP = VOL_MIN_PERIODS

_L_LAG = 0  # lag buffer of log prices
_L_PREV = lag_width(5)  # previous close
_L_RSI = _L_PREV + 1
_L_MA5 = _L_RSI + 2 * EWM_MEAN_WIDTH
_L_MA10 = _L_MA5 + rsum_width(5)
_L_MA20 = _L_MA10 + rsum_width(10)
LDTM_WIDTH = _L_MA20 + rsum_width(20)


@njit(cache=True, inline="always")
def dmn_init(S, j):
    """Reset symbol j's DMN state (column j of ``S``, ``DMN_WIDTH`` slots)."""
    lag_init(S, j, 0, _DMN_DEPTH)
    ewm_var_init(S, j, _D_VOL)
    roll_init(S, j, _D_PRICE, 63)
    for p in range(3):
        o = _D_PAIRS + p * _D_PAIR_WIDTH
        ewm_mean_init(S, j, o)
        ewm_mean_init(S, j, o + EWM_MEAN_WIDTH)
        roll_init(S, j, o + 2 * EWM_MEAN_WIDTH, 252)


@njit(cache=True, inline="always")
def dmn_step(S, j, close, out, t, k_out):
    """Feed symbol j's close of one bar; write its 8 DMN features to ``out[t, k_out, :]``."""
    lag_push(S, j, 0, _DMN_DEPTH, close)
    prev = lag_get(S, j, 0, _DMN_DEPTH, 1)
    ewm_var_push(S, j, _D_VOL, close / prev - 1.0, _DMN_VOL_ALPHA, True)
    vol = math.sqrt(ewm_var_value(S, j, _D_VOL, _DMN_VOL_MINP))
    inv_vol = 1.0 / vol if vol > 0 else np.nan
    for i in range(5):
        r = close / lag_get(S, j, 0, _DMN_DEPTH, _DMN_H[i]) - 1.0
        out[t, k_out, i] = r * inv_vol * _DMN_INV_SQRT_H[i]
    roll_push(S, j, _D_PRICE, 63, close)
    sd = math.sqrt(roll_var_value(S, j, _D_PRICE, 63, 1))
    inv_sd = 1.0 / sd if sd > 0 else np.nan
    for p in range(3):
        o = _D_PAIRS + p * _D_PAIR_WIDTH
        ewm_mean_push(S, j, o, close, _DMN_AS[p], True)
        ewm_mean_push(S, j, o + EWM_MEAN_WIDTH, close, _DMN_AL[p], True)
        q = (ewm_mean_value(S, j, o, 1) - ewm_mean_value(S, j, o + EWM_MEAN_WIDTH, 1)) * inv_sd
        ro = o + 2 * EWM_MEAN_WIDTH
        roll_push(S, j, ro, 252, q)
        qs = math.sqrt(roll_var_value(S, j, ro, 252, 1))
        out[t, k_out, 5 + p] = q / qs if qs > 0 else np.nan


@njit(cache=True, inline="always")
def ldtm_init(S, j):
    """Reset symbol j's LDTM state (``LDTM_WIDTH`` slots)."""
    lag_init(S, j, _L_LAG, 5)
    S[_L_PREV, j] = np.nan
    ewm_mean_init(S, j, _L_RSI)
    ewm_mean_init(S, j, _L_RSI + EWM_MEAN_WIDTH)
    rsum_init(S, j, _L_MA5, 5)
    rsum_init(S, j, _L_MA10, 10)
    rsum_init(S, j, _L_MA20, 20)


@njit(cache=True, inline="always")
def ldtm_step(S, j, o, h, lo, c, v, out, t, k_out):
    """Feed symbol j's OHLCV bar; write its 11 LDTM features to ``out[t, k_out, :]``."""
    logc = math.log(c) if c > 0 else np.nan
    lag_push(S, j, _L_LAG, 5, logc)
    prev = S[_L_PREV, j]
    S[_L_PREV, j] = c
    out[t, k_out, 0] = o
    out[t, k_out, 1] = h
    out[t, k_out, 2] = lo
    out[t, k_out, 3] = c
    out[t, k_out, 4] = v
    out[t, k_out, 5] = logc - lag_get(S, j, _L_LAG, 5, 1)
    out[t, k_out, 6] = logc - lag_get(S, j, _L_LAG, 5, 5)
    d = c - prev
    if np.isnan(d):
        out[t, k_out, 7] = _wilder_step(S, j, _L_RSI, np.nan, np.nan, 14.0)
    else:
        out[t, k_out, 7] = _wilder_step(S, j, _L_RSI, max(d, 0.0), max(-d, 0.0), 14.0)
    rsum_push(S, j, _L_MA5, 5, c)
    rsum_push(S, j, _L_MA10, 10, c)
    rsum_push(S, j, _L_MA20, 20, c)
    m5 = rsum_mean_value(S, j, _L_MA5, 5)
    m10 = rsum_mean_value(S, j, _L_MA10, 10)
    m20 = rsum_mean_value(S, j, _L_MA20, 20)
    out[t, k_out, 8] = c / m5 if m5 > 0 else np.nan
    out[t, k_out, 9] = c / m10 if m10 > 0 else np.nan
    out[t, k_out, 10] = c / m20 if m20 > 0 else np.nan


CHUNK = 64  # symbols per parallel task in the fused engines


@njit(cache=True, parallel=True)
def dmn_run(S, slots, close):
    """Step the DMN engine over ``close`` ``(T, n)`` for the symbols in state columns ``slots``
    ``(n,)``; returns the features ``(T, n, 8)``. Time-major within chunks of ``CHUNK`` symbols so
    that inputs, outputs and state are read contiguously."""
    T, n = close.shape
    out = np.empty((T, n, 8))
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        for t in range(T):
            for k in range(lo, hi):
                dmn_step(S, slots[k], close[t, k], out, t, k)
    return out


@njit(cache=True, parallel=True)
def ldtm_run(S, slots, o, h, lo_, c, v):
    """Step the LDTM engine over ``(T, n)`` OHLCV arrays; returns the features ``(T, n, 11)``."""
    T, n = c.shape
    out = np.empty((T, n, 11))
    n_chunks = (n + CHUNK - 1) // CHUNK
    for ch in prange(n_chunks):
        a = ch * CHUNK
        b = min(a + CHUNK, n)
        for t in range(T):
            for k in range(a, b):
                ldtm_step(S, slots[k], o[t, k], h[t, k], lo_[t, k], c[t, k], v[t, k], out, t, k)
    return out


@njit(cache=True, inline="always")
def dmn_init_all(S, slots):
    for k in range(len(slots)):
        dmn_init(S, slots[k])


@njit(cache=True, inline="always")
def ldtm_init_all(S, slots):
    for k in range(len(slots)):
        ldtm_init(S, slots[k])


def dmn_batch(close) -> np.ndarray:
    """The eight DMN inputs for a ``(T, N)`` array of adjusted closes, as ``(T, N, 8)`` float64 in
    the order of ``DMN_NAMES``: volatility-normalised returns over 1, 21, 63, 126, 252 days
    (:func:`vol_normalised_returns` with :func:`ex_ante_vol`, span 60, at least 20 returns) and
    :func:`macd_baz` for (8, 24), (16, 48), (32, 96) (Lim, Zohren & Roberts, 2019, section 4.1)."""
    c, _ = _as2d(close, "close")
    N = c.shape[1]
    S = np.empty((DMN_WIDTH, N))
    slots = np.arange(N, dtype=np.int64)
    dmn_init_all(S, slots)
    return dmn_run(S, slots, np.ascontiguousarray(c))


def ldtm_batch(open_, high, low, close, volume) -> np.ndarray:
    """The 11 per-ticker LDTM inputs (seed 003) for ``(T, N)`` OHLCV arrays, as ``(T, N, 11)``
    float64 in the order of ``LDTM_NAMES``: open, high, low, close, volume as given; log returns
    over 1 and 5 days; RSI-14 (first-value-seeded, :func:`rsi_ewm`); close over its 5-, 10- and 20-day SMA."""
    arrs = [_as2d(a, n)[0] for a, n in zip((open_, high, low, close, volume), ("open", "high", "low", "close", "volume"), strict=True)]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"open, high, low, close, volume must share one shape, got {sorted(shapes)}")
    N = arrs[0].shape[1]
    S = np.empty((LDTM_WIDTH, N))
    slots = np.arange(N, dtype=np.int64)
    ldtm_init_all(S, slots)
    return ldtm_run(S, slots, *[np.ascontiguousarray(a) for a in arrs])
