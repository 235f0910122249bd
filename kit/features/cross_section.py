"""Cross-sectional signals: rebalance calendars, the 12-1 momentum score, quantile buckets and the
legs of a quantile long-short book, and the learning-to-rank inputs of Poh et al. (2021).

A cross-sectional strategy ranks the assets of a universe against each other on each rebalance date
and buys the top quantile while selling the bottom one (Jegadeesh & Titman, 1993). This module
decides *which* names are in each leg; :mod:`kit.portfolio.cross_sectional` decides *how much* of
each is held (equal or inverse-volatility weights, gross exposure) and the training layer uses the
same legs as a ranker's positions. Everything at date t uses prices up to t only.

Rebalance calendars are read off the data's own trading dates (the last trading date of each week,
month or quarter present in the index), so every rebalance date is a real close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import kernels
from .indicators import baz_response
from .sets import FeatureArray, feature_set

__all__ = [
    "REBALANCE_FREQUENCIES",
    "rebalance_dates",
    "month_end_dates",
    "rebalance_positions",
    "momentum_12_1",
    "quantile_buckets",
    "quantile_legs",
    "ltr_features",
]

REBALANCE_FREQUENCIES = ("W", "M", "Q")
"""Rebalance calendars of :func:`rebalance_dates`: weekly, monthly, quarterly."""


# ------------------------------------------------------------------------------------------------
# calendars
# ------------------------------------------------------------------------------------------------


def rebalance_dates(index: pd.DatetimeIndex, freq: str = "M") -> pd.DatetimeIndex:
    """The last trading date of each period (week, month or quarter) present in ``index``.

    Parameters
    ----------
    index : (T,) strictly increasing DatetimeIndex of trading dates.
    freq : ``"W"`` (ISO week), ``"M"`` (calendar month) or ``"Q"`` (calendar quarter).

    Returns
    -------
    DatetimeIndex, a subset of ``index``. The last date of ``index`` is always included (it is the
    last date of its period *in the data*, even if the data stop before the period's true end).

    Raises
    ------
    ValueError
        ``freq`` unknown, or ``index`` not strictly increasing.
    """
    index = pd.DatetimeIndex(index)
    if freq not in REBALANCE_FREQUENCIES:
        raise ValueError(f"freq must be one of {REBALANCE_FREQUENCIES}, got {freq!r}")
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise ValueError("index must be strictly increasing (no duplicate dates)")
    if len(index) == 0:
        return index
    if freq == "W":
        iso = index.isocalendar()
        key = iso["year"].to_numpy() * 100 + iso["week"].to_numpy()
    elif freq == "M":
        key = index.year.to_numpy() * 100 + index.month.to_numpy()
    else:
        key = index.year.to_numpy() * 10 + index.quarter.to_numpy()
    last = np.r_[key[1:] != key[:-1], True]
    return pd.DatetimeIndex(index[last], name=index.name)


def month_end_dates(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Last trading date of each calendar month in ``index`` (:func:`rebalance_dates` with ``"M"``)."""
    return rebalance_dates(index, "M")


def rebalance_positions(index: pd.DatetimeIndex, dates) -> np.ndarray:
    """Integer positions ``(K,)`` int64 of ``dates`` on ``index`` (sorted, unique).

    Raises
    ------
    ValueError
        A date of ``dates`` is not in ``index`` (named), or ``dates`` is empty.
    """
    index = pd.DatetimeIndex(index)
    dates = pd.DatetimeIndex(dates).unique().sort_values()
    if len(dates) == 0:
        raise ValueError("rebalance dates: none given")
    pos = index.get_indexer(dates)
    if (pos < 0).any():
        bad = dates[int(np.argmax(pos < 0))]
        raise ValueError(f"rebalance dates: {bad.date()} is not a date of the index")
    return pos.astype(np.int64)


# ------------------------------------------------------------------------------------------------
# signals
# ------------------------------------------------------------------------------------------------


def momentum_12_1(close: pd.DataFrame, lookback: int = 252, skip: int = 21) -> pd.DataFrame:
    """Jegadeesh & Titman (1993) momentum: the past 12-month return skipping the last month.

    ``m_t = close_{t-skip} / close_{t-lookback} - 1`` (252 and 21 trading days by default, the
    daily-data spelling of the monthly "12-1" formation period), defined only where ``close_t``
    is also present (the asset trades at t). Uses prices up to ``t - skip`` only.

    Parameters
    ----------
    close : (T, N) adjusted closes.
    lookback, skip : trading days; ``0 <= skip < lookback``.

    Returns
    -------
    (T, N) float64 DataFrame; NaN for the first ``lookback`` dates and where a price is missing.

    Raises
    ------
    ValueError
        ``lookback`` or ``skip`` out of range (named with the value).
    """
    if int(lookback) != lookback or lookback < 1:
        raise ValueError(f"lookback must be a positive integer, got {lookback!r}")
    if int(skip) != skip or not 0 <= skip < lookback:
        raise ValueError(f"skip must be an integer in [0, lookback={lookback}), got {skip!r}")
    c = close.to_numpy(dtype="float64")
    r = kernels.simple_returns(c, int(lookback - skip))  # close_t / close_{t-(lookback-skip)} - 1
    m = np.full(c.shape, np.nan)
    m[skip:] = r[: len(c) - skip] if skip else r
    return pd.DataFrame(np.where(np.isfinite(c), m, np.nan), index=close.index, columns=close.columns)


def ltr_features(close: pd.DataFrame) -> FeatureArray:
    """The learning-to-rank inputs of Poh, Lim, Zohren & Roberts (2021) on daily closes, ``(T, N, 24)``.

    - the 8 DMN inputs (:func:`kit.features.feature_set` ``'dmn'``): volatility-normalised returns
      over 1, 21, 63, 126, 252 days (so over 3, 6 and 12 months among them) and the normalised MACD
      of Baz et al. (2015) for (8, 24), (16, 48), (32, 96);
    - raw returns over 63, 126, 252 days (``ret_63`` ...);
    - the three MACD indicators lagged by 21, 63, 126 and 252 days (``macd_8_24_lag21`` ...: "the
      normalised MACD ... over the past 1, 3, 6 and 12 months");
    - the Baz composite ``mean_k phi(Y_k)`` (``macd_composite``, :func:`kit.features.baz_response`).

    Every value at t uses prices up to t (lags look back). NaN until enough history exists.

    Returns
    -------
    :class:`kit.features.FeatureArray`, float64 values, labelled like ``close``.
    """
    dmn = feature_set("dmn", close)
    vals = [dmn.values]
    names = list(dmn.names)
    c = close.to_numpy(dtype="float64")
    for k in (63, 126, 252):
        vals.append(kernels.simple_returns(c, k)[:, :, None])
        names.append(f"ret_{k}")
    macd_names = [n for n in dmn.names if n.startswith("macd_")]
    for lag in (21, 63, 126, 252):
        for n in macd_names:
            x = dmn.values[:, :, dmn.names.index(n)]
            lagged = np.full(x.shape, np.nan)
            lagged[lag:] = x[:-lag]
            vals.append(lagged[:, :, None])
            names.append(f"{n}_lag{lag}")
    y = dmn.values[:, :, [dmn.names.index(n) for n in macd_names]]
    vals.append(baz_response(y).mean(axis=2, keepdims=True))
    names.append("macd_composite")
    return FeatureArray(np.concatenate(vals, axis=2), names, close.index, close.columns)


# ------------------------------------------------------------------------------------------------
# quantiles and legs
# ------------------------------------------------------------------------------------------------


def _mask(name: str, frame, ref: pd.DataFrame) -> np.ndarray:
    if isinstance(frame, pd.DataFrame):
        if not (frame.index.equals(ref.index) and list(frame.columns) == list(ref.columns)):
            raise ValueError(f"{name} must have the same dates and symbols as scores")
        return frame.to_numpy(dtype=bool)
    arr = np.asarray(frame, dtype=bool)
    if arr.shape != ref.shape:
        raise ValueError(f"{name} has shape {arr.shape}, scores {ref.shape}")
    return arr


def quantile_buckets(scores: pd.DataFrame, eligible: pd.DataFrame | np.ndarray | None = None, n_quantiles: int = 10) -> pd.DataFrame:
    """Cross-sectional quantile (1 = lowest score ... ``n_quantiles`` = highest) of each score.

    On each date, among the ``n`` eligible assets with a finite score, asset i with average rank
    ``r_i`` (1-based; ties share their average rank) gets bucket ``ceil(n_quantiles * r_i / n)``.
    When ``n`` is a multiple of ``n_quantiles`` and there are no ties this is exactly
    ``pd.qcut(scores, n_quantiles, labels=False) + 1`` (the rule of alphalens'
    ``quantize_factor``); unlike ``qcut`` it never fails on ties. With ``n >= n_quantiles`` and no
    ties the lowest and highest buckets are never empty (ties can empty them: see
    :func:`quantile_legs` for how a book treats ties).

    Parameters
    ----------
    scores : (T, N) DataFrame.
    eligible : (T, N) bool, or None (every finite score is eligible).
    n_quantiles : >= 2.

    Returns
    -------
    (T, N) float64 DataFrame of buckets in ``1..n_quantiles``; NaN where not eligible or no score.

    Raises
    ------
    ValueError
        ``n_quantiles < 2`` or ``eligible`` of another shape.
    """
    if int(n_quantiles) != n_quantiles or n_quantiles < 2:
        raise ValueError(f"n_quantiles must be an integer >= 2, got {n_quantiles!r}")
    s = scores.astype("float64")
    if eligible is not None:
        s = s.where(_mask("eligible", eligible, s))
    s = s.where(np.isfinite(s.to_numpy()))
    ranks = s.rank(axis=1, method="average")
    n = s.notna().sum(axis=1).to_numpy(dtype="float64")[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.ceil(n_quantiles * ranks.to_numpy() / n - 1e-12)
    b = np.clip(b, 1, n_quantiles)
    return pd.DataFrame(np.where(np.isfinite(ranks.to_numpy()), b, np.nan), index=scores.index, columns=scores.columns)


def quantile_legs(
    scores: pd.DataFrame,
    membership: pd.DataFrame | np.ndarray | None = None,
    rebalance=None,
    n_quantiles: int = 10,
    min_names: int | None = None,
) -> pd.DataFrame:
    """The legs of a quantile long-short book: +1 for the top quantile, -1 for the bottom one.

    On each rebalance date t the members (``membership[t]`` True) with a finite score are bucketed as
    in :func:`quantile_buckets` (``ceil(n_quantiles * rank / n)``). Ties: a group of tied scores
    that reaches into the top (bottom) bucket joins that leg whole (its highest rank decides for
    the top leg, its lowest for the bottom leg), so tied names are treated alike; a leg can then
    hold more than ``n / n_quantiles`` names (a ranker trained with NDCG often ties many names at
    the bottom). A tied group that reaches into both legs joins neither. Without ties the legs are
    exactly the top and bottom buckets of :func:`quantile_buckets`. A rebalance date with fewer
    than ``min_names`` eligible names, or where ties leave a leg empty, has no book (every leg 0):
    a book is never one-sided.

    The legs decided at a rebalance date are held until the next one; a name whose membership
    turns False in between gets NaN (it cannot be held) and is not replaced until the next
    rebalance.

    Parameters
    ----------
    scores : (T, N) DataFrame of scores known at the close of each date (higher = buy).
    membership : (T, N) bool (point-in-time universe and a price on the date), or None (all True).
    rebalance : rebalance dates (a subset of ``scores.index``); default the month ends.
    n_quantiles : number of buckets (10 = deciles).
    min_names : minimum eligible names to form a book (default ``n_quantiles``).

    Returns
    -------
    (T, N) float64 DataFrame: +1 (long leg), -1 (short leg), 0 (a member in neither leg), NaN
    (not a member, or before the first rebalance date).

    Raises
    ------
    ValueError
        Mismatched shapes or labels, a rebalance date not in the index, bad ``n_quantiles`` or
        ``min_names``.
    """
    if int(n_quantiles) != n_quantiles or n_quantiles < 2:
        raise ValueError(f"n_quantiles must be an integer >= 2, got {n_quantiles!r}")
    min_names = int(n_quantiles) if min_names is None else int(min_names)
    if min_names < 2:
        raise ValueError(f"min_names must be >= 2, got {min_names}")
    T, N = scores.shape
    mask = np.ones((T, N), bool) if membership is None else _mask("membership", membership, scores)
    reb = rebalance_positions(scores.index, month_end_dates(scores.index) if rebalance is None else rebalance)
    s = scores.to_numpy(dtype="float64")
    elig = mask & np.isfinite(s)
    sub = pd.DataFrame(np.where(elig[reb], s[reb], np.nan))
    n_elig = elig[reb].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.ceil(n_quantiles * sub.rank(axis=1, method="max").to_numpy() / n_elig[:, None] - 1e-12) >= n_quantiles
        bottom = np.ceil(n_quantiles * sub.rank(axis=1, method="min").to_numpy() / n_elig[:, None] - 1e-12) <= 1
    both = top & bottom  # a tied group reaching into both legs is neither a winner nor a loser
    top, bottom = top & ~both, bottom & ~both
    book = (n_elig >= min_names) & top.any(axis=1) & bottom.any(axis=1)
    rows = np.where(book[:, None], top.astype("float64") - bottom.astype("float64"), 0.0)
    out = np.full((T, N), np.nan)
    bounds = np.r_[reb, T]
    for k in range(len(reb)):
        out[bounds[k] : bounds[k + 1]] = rows[k]
    out = np.where(mask, out, np.nan)
    return pd.DataFrame(out, index=scores.index, columns=scores.columns)
