"""Cross-sectional strategies: rebalance calendars, momentum signals, quantile long-short books.

A cross-sectional strategy ranks the assets of a universe against each other on each rebalance
date and buys the top quantile while selling the bottom one (Jegadeesh & Titman, 1993). Here:

- rebalance calendars are read off the data's own trading dates (the last trading date of each
  month, week or quarter present in the index), so every rebalance date is a real close;
- signals: :func:`momentum_12_1` (the 12-month return skipping the last month, Jegadeesh &
  Titman, 1993) and :func:`macd_cs_signal` (the volatility-normalised MACD composite of Baz et
  al., 2015, ranked cross-sectionally as in Poh, Lim, Zohren & Roberts, 2021);
- :func:`decile_long_short_weights` turns any ``(T, N)`` scores into a market-neutral book held
  between rebalances, on a point-in-time universe given as a boolean ``(T, N)`` membership mask;
- benchmark builders :func:`cs_momentum_weights` and :func:`cs_macd_weights`.

Timing: a score at rebalance date t uses prices up to t only; the weights decided at the close of
t are held from t to the next rebalance date and earn ``r_{t+1}`` onwards (the kit's convention,
see :mod:`kit.backtest`). Holding is *drift-free* by default: the weight row set at a rebalance
date is repeated on every date until the next one (a daily rebalance back to the target, which
is what ``sum_i w_{t,i} r_{t+1,i}`` assumes). ``hold="drift"`` instead returns NaN rows between
rebalances so that :func:`kit.backtest.simulate` holds the shares and lets the weights drift.

Imports from the flat kit: :mod:`kit.features` (``daily_returns``, ``ex_ante_vol``) and
:mod:`kit.backtest` (``macd_positions``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import backtest as _backtest
from . import features as _features

__all__ = [
    "REBALANCE_FREQUENCIES",
    "rebalance_dates",
    "month_end_dates",
    "rebalance_positions",
    "momentum_12_1",
    "macd_cs_signal",
    "quantile_buckets",
    "decile_long_short_weights",
    "cs_momentum_weights",
    "cs_macd_weights",
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
    """Integer positions of ``dates`` on ``index`` (sorted, unique).

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
    c = close.astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        m = c.shift(skip) / c.shift(lookback) - 1.0
    return m.where(c.notna())


def macd_cs_signal(close: pd.DataFrame, pairs=_backtest.MACD_PAIRS, price_window: int = 63, signal_window: int = 252) -> pd.DataFrame:
    """The volatility-normalised MACD composite of Baz et al. (2015), used as a cross-sectional score.

    ``S_t = (1/K) sum_k phi(Y_t(S_k, L_k))``, ``phi(y) = y exp(-y^2/4) / 0.89``, with ``Y`` the
    normalised MACD of :func:`kit.kernels.macd_baz` for (8, 24), (16, 48), (32, 96) — the same
    number as :func:`kit.backtest.macd_positions` (the time-series MACD benchmark); here it is
    ranked across assets ("Baz" benchmark of Poh et al., 2021). Defined only where ``close_t`` is
    present. Uses prices up to t.

    Returns
    -------
    (T, N) float64 DataFrame; NaN until ``price_window + signal_window - 1`` valid prices.
    """
    s = _backtest.macd_positions(close, pairs, price_window, signal_window)
    return s.where(close.notna())


# ------------------------------------------------------------------------------------------------
# quantile books
# ------------------------------------------------------------------------------------------------


def quantile_buckets(scores: pd.DataFrame, eligible: pd.DataFrame | np.ndarray | None = None, n_quantiles: int = 10) -> pd.DataFrame:
    """Cross-sectional quantile (1 = lowest score ... ``n_quantiles`` = highest) of each score.

    On each date, among the ``n`` eligible assets with a finite score, asset i with average rank
    ``r_i`` (1-based; ties share their average rank) gets bucket ``ceil(n_quantiles * r_i / n)``.
    When ``n`` is a multiple of ``n_quantiles`` and there are no ties this is exactly
    ``pd.qcut(scores, n_quantiles, labels=False) + 1`` (the rule of alphalens'
    ``quantize_factor``); unlike ``qcut`` it never fails on ties. With ``n >= n_quantiles`` and no
    ties the lowest and highest buckets are never empty (ties can empty them: see
    :func:`decile_long_short_weights` for how the book treats ties).

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
        e = np.asarray(eligible, dtype=bool)
        if e.shape != s.shape:
            raise ValueError(f"eligible has shape {e.shape}, scores {s.shape}")
        s = s.where(e)
    s = s.where(np.isfinite(s.to_numpy()))
    ranks = s.rank(axis=1, method="average")
    n = s.notna().sum(axis=1).to_numpy(dtype="float64")[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.ceil(n_quantiles * ranks.to_numpy() / n - 1e-12)
    b = np.clip(b, 1, n_quantiles)
    return pd.DataFrame(np.where(np.isfinite(ranks.to_numpy()), b, np.nan), index=scores.index, columns=scores.columns)


def _check_frame(name: str, frame, ref: pd.DataFrame) -> pd.DataFrame:
    if isinstance(frame, pd.DataFrame):
        if not (frame.index.equals(ref.index) and list(frame.columns) == list(ref.columns)):
            raise ValueError(f"{name} must have the same dates and symbols as scores")
        return frame
    arr = np.asarray(frame)
    if arr.shape != ref.shape:
        raise ValueError(f"{name} has shape {arr.shape}, scores {ref.shape}")
    return pd.DataFrame(arr, index=ref.index, columns=ref.columns)


def decile_long_short_weights(
    scores: pd.DataFrame,
    membership: pd.DataFrame | np.ndarray | None = None,
    rebalance=None,
    n_quantiles: int = 10,
    vol_scale: bool = False,
    daily_vol: pd.DataFrame | None = None,
    gross: float = 1.0,
    min_names: int | None = None,
    hold: str = "constant",
) -> pd.DataFrame:
    """Market-neutral quantile long-short weights: long the top quantile, short the bottom one.

    On each rebalance date t the assets that are members (``membership[t]`` True) with a finite
    score (and, with ``vol_scale``, a positive finite ``daily_vol``) are bucketed as in
    :func:`quantile_buckets` (``ceil(n_quantiles * rank / n)``). The top bucket is bought with
    ``gross / 2`` of equity and the bottom bucket sold with ``gross / 2``: dollar-neutral (weights
    sum to 0) with gross exposure ``gross`` (0.5 long, 0.5 short by default). Ties: a group of
    tied scores that reaches into the top (bottom) bucket joins that leg whole (its highest rank
    decides for the top leg, its lowest for the bottom leg), so tied names are treated alike; a
    leg can then hold more than ``n / n_quantiles`` names (a ranker trained with NDCG, which
    rewards the top of the list, often ties many names at the bottom). A tied group that reaches
    into both legs (e.g. the big middle group of an early-stopped model with three distinct
    outputs) joins neither. Without ties the legs are exactly the top and bottom buckets of
    :func:`quantile_buckets`.

    - ``vol_scale=False``: equal weights within each leg, ``+-gross / (2 n_leg)``
      (Jegadeesh & Titman, 1993).
    - ``vol_scale=True``: within each leg ``w_i`` proportional to ``1 / sigma_i`` (``daily_vol``
      at t), normalised so each leg still sums to ``+-gross / 2``. This keeps the book
      dollar-neutral and gives each name in a leg the same ex-ante volatility; it differs from
      Poh et al. (2021, eq. 1) and Baz et al. (2015), who scale each name to a target volatility
      ``sigma_tgt / sigma_i`` and so let the book's net and gross exposure float.

    Between rebalances the weights are held (``hold="constant"``: the rebalance row is repeated,
    drift-free; ``"drift"``: NaN rows, for :func:`kit.backtest.simulate`). With a membership mask
    and ``hold="constant"``, a name whose mask turns False between rebalances is closed (weight
    0) from that date and not replaced until the next rebalance, so the book is exactly
    dollar-neutral on rebalance dates and may be slightly net long or short in between.
    Dates before the first rebalance date get weight 0. Rebalance dates with fewer than
    ``min_names`` eligible assets, or where ties leave a leg empty (e.g. all scores equal), get
    weight 0 until the next rebalance: the book is never one-sided.

    Parameters
    ----------
    scores : (T, N) DataFrame of scores known at the close of each date (higher = buy).
    membership : (T, N) bool DataFrame or array (point-in-time universe), or None (all True).
        Pass ``close.notna() & universe`` so that no name is held on a date without a price.
    rebalance : rebalance dates (a subset of ``scores.index``); default the month ends
        (:func:`month_end_dates`).
    n_quantiles : number of buckets (10 = deciles).
    vol_scale : inverse-volatility weights within each leg (needs ``daily_vol``).
    daily_vol : (T, N) ex-ante volatility (any consistent unit, e.g. daily EWM std).
    gross : gross exposure, fraction of equity (> 0).
    min_names : minimum eligible assets to trade on a rebalance date (default ``n_quantiles``).
    hold : ``"constant"`` or ``"drift"``.

    Returns
    -------
    (T, N) float64 DataFrame of weights (fractions of equity), labelled like ``scores``.

    Raises
    ------
    ValueError
        Mismatched shapes or labels, ``vol_scale`` without ``daily_vol``, ``gross <= 0``,
        unknown ``hold``, a rebalance date not in the index, bad ``n_quantiles``.
    """
    if not gross > 0:
        raise ValueError(f"gross must be > 0, got {gross!r}")
    if hold not in ("constant", "drift"):
        raise ValueError(f"hold must be 'constant' or 'drift', got {hold!r}")
    if int(n_quantiles) != n_quantiles or n_quantiles < 2:
        raise ValueError(f"n_quantiles must be an integer >= 2, got {n_quantiles!r}")
    min_names = n_quantiles if min_names is None else int(min_names)
    if min_names < 2:
        raise ValueError(f"min_names must be >= 2, got {min_names}")
    T, N = scores.shape
    mask = np.ones((T, N), bool) if membership is None else _check_frame("membership", membership, scores).to_numpy(dtype=bool)
    if vol_scale:
        if daily_vol is None:
            raise ValueError("vol_scale=True needs daily_vol")
        vol = _check_frame("daily_vol", daily_vol, scores).to_numpy(dtype="float64")
    reb = rebalance_positions(scores.index, month_end_dates(scores.index) if rebalance is None else rebalance)
    s = scores.to_numpy(dtype="float64")
    elig = mask & np.isfinite(s)
    if vol_scale:
        elig &= np.isfinite(vol) & (vol > 0)
    sub = pd.DataFrame(np.where(elig[reb], s[reb], np.nan), columns=scores.columns)
    n_elig = elig[reb].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.ceil(n_quantiles * sub.rank(axis=1, method="max").to_numpy() / n_elig[:, None] - 1e-12) >= n_quantiles
        bottom = np.ceil(n_quantiles * sub.rank(axis=1, method="min").to_numpy() / n_elig[:, None] - 1e-12) <= 1
    both = top & bottom  # a tied group reaching into both legs is neither a winner nor a loser
    top, bottom = top & ~both, bottom & ~both
    rows = np.zeros((len(reb), N))
    for k in range(len(reb)):
        legs = ((top[k], 1.0), (bottom[k], -1.0))
        if n_elig[k] < min_names or not (top[k].any() and bottom[k].any()):
            continue  # too few names, or ties leave a leg empty: no book rather than a one-sided one
        for leg, sign in legs:
            raw = 1.0 / vol[reb[k]][leg] if vol_scale else np.ones(int(leg.sum()))
            rows[k, leg] = sign * 0.5 * gross * raw / raw.sum()
    out = np.full((T, N), np.nan) if hold == "drift" else np.zeros((T, N))
    out[: reb[0]] = 0.0
    if hold == "drift":
        out[reb] = rows
    else:
        bounds = np.r_[reb, T]
        for k in range(len(reb)):
            out[bounds[k] : bounds[k + 1]] = rows[k]
        out = np.where(mask, out, 0.0)
    return pd.DataFrame(out, index=scores.index, columns=scores.columns)


def _membership(close: pd.DataFrame, membership) -> np.ndarray:
    tradable = close.notna().to_numpy()
    if membership is None:
        return tradable
    return tradable & _check_frame("membership", membership, close).to_numpy(dtype=bool)


def _daily_vol(close: pd.DataFrame, vol_span: int) -> pd.DataFrame:
    return _features.ex_ante_vol(_features.daily_returns(close), span=vol_span, annualise=False)


def cs_momentum_weights(
    close: pd.DataFrame,
    membership=None,
    freq: str = "M",
    n_quantiles: int = 10,
    vol_scale: bool = False,
    lookback: int = 252,
    skip: int = 21,
    gross: float = 1.0,
    vol_span: int = 60,
    hold: str = "constant",
) -> pd.DataFrame:
    """Classical cross-sectional momentum (Jegadeesh & Titman, 1993) as ``(T, N)`` weights.

    Rank on :func:`momentum_12_1` at each rebalance date (month ends by default), long the top
    decile and short the bottom one, dollar-neutral with gross ``gross``, equal weight or
    inverse-volatility within legs (``vol_scale``, ex-ante daily EWM volatility with span
    ``vol_span``, :func:`kit.features.ex_ante_vol`); see :func:`decile_long_short_weights`.
    Only names with a price on the date (and ``membership`` True, if given) are ranked or held.

    Parameters
    ----------
    close : (T, N) adjusted closes.
    membership : optional (T, N) bool point-in-time universe.

    Returns
    -------
    (T, N) float64 weights.
    """
    score = momentum_12_1(close, lookback, skip)
    vol = _daily_vol(close, vol_span) if vol_scale else None
    return decile_long_short_weights(
        score, _membership(close, membership), rebalance_dates(close.index, freq), n_quantiles, vol_scale, vol, gross, hold=hold
    )


def cs_macd_weights(
    close: pd.DataFrame,
    membership=None,
    freq: str = "M",
    n_quantiles: int = 10,
    vol_scale: bool = False,
    gross: float = 1.0,
    vol_span: int = 60,
    hold: str = "constant",
) -> pd.DataFrame:
    """Cross-sectional MACD ("Baz" benchmark of Poh et al., 2021) as ``(T, N)`` weights: rank on
    :func:`macd_cs_signal` at each rebalance date; otherwise as :func:`cs_momentum_weights`.

    Returns
    -------
    (T, N) float64 weights.
    """
    score = macd_cs_signal(close)
    vol = _daily_vol(close, vol_span) if vol_scale else None
    return decile_long_short_weights(
        score, _membership(close, membership), rebalance_dates(close.index, freq), n_quantiles, vol_scale, vol, gross, hold=hold
    )
