"""Cross-sectional books: quantile long-short weights and the cross-sectional momentum benchmarks.

Which names are long or short on each rebalance date is decided by
:func:`kit.features.cross_section.quantile_legs` (top and bottom quantile of a score, ties kept
together); this module sizes the legs:

- :func:`leg_weights`: legs to weights, equal weight (Jegadeesh & Titman, 1993) or inverse
  volatility within each leg, dollar-neutral at gross ``gross`` (``gross / 2`` long and ``gross / 2``
  short), or a long-only tilt (the top leg alone at ``gross``);
- :func:`decile_long_short_weights`: scores to weights in one call;
- benchmarks :func:`cs_momentum_weights` (12-1 momentum, Jegadeesh & Titman, 1993) and
  :func:`cs_macd_weights` (the Baz et al., 2015 MACD composite ranked across assets, the "Baz"
  benchmark of Poh, Lim, Zohren & Roberts, 2021), and :func:`cross_sectional_benchmarks`, the set a
  report compares the learned rankers with.

Timing: a score at rebalance date t uses prices up to t only; the weights decided at the close of t
are held from t to the next rebalance date and earn ``r_{t+1}`` onwards. Holding is drift-free by
default (``hold="constant"``: the rebalance row is repeated, i.e. a daily rebalance back to the
target); ``hold="drift"`` returns NaN rows between rebalances so that
:func:`kit.portfolio.backtest.simulate` holds the shares and lets the weights drift.

These books are weights, not positions: they skip the per-asset volatility targeting of
:func:`kit.portfolio.sizing.vol_scaled_weights` (the legs are sized here) and take the book-level
volatility target like every other strategy (:func:`kit.portfolio.backtest.compare_strategies`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import (
    daily_returns,
    ex_ante_vol,
    macd_composite,
    momentum_12_1,
    month_end_dates,
    quantile_legs,
    rebalance_dates,
    rebalance_positions,
)

__all__ = [
    "leg_weights",
    "decile_long_short_weights",
    "cs_momentum_weights",
    "cs_macd_weights",
    "cross_sectional_benchmarks",
    "CS_BENCHMARK_NAMES",
]

CS_BENCHMARK_NAMES = ("CS momentum", "CS momentum (inv. vol)", "CS MACD", "CS momentum top (long only)")
"""Names of :func:`cross_sectional_benchmarks`, in order."""


def _frame(name: str, frame, ref: pd.DataFrame) -> np.ndarray:
    if isinstance(frame, pd.DataFrame):
        if not (frame.index.equals(ref.index) and list(frame.columns) == list(ref.columns)):
            raise ValueError(f"{name} must have the same dates and symbols as the legs")
        return frame.to_numpy(dtype="float64")
    arr = np.asarray(frame, dtype="float64")
    if arr.shape != ref.shape:
        raise ValueError(f"{name} has shape {arr.shape}, legs {ref.shape}")
    return arr


def leg_weights(
    legs: pd.DataFrame,
    rebalance=None,
    gross: float = 1.0,
    daily_vol: pd.DataFrame | None = None,
    long_only: bool = False,
    hold: str = "constant",
) -> pd.DataFrame:
    """Weights of the legs of a quantile book (:func:`kit.features.cross_section.quantile_legs`).

    On each rebalance date t the long leg (legs == +1) is bought with ``gross / 2`` of equity and
    the short leg (-1) sold with ``gross / 2``: dollar-neutral (weights sum to 0), gross exposure
    ``gross``. Within a leg, equal weights ``+-gross / (2 n_leg)`` (Jegadeesh & Titman, 1993) or,
    with ``daily_vol``, weights proportional to ``1 / sigma_i`` (names without a finite positive
    volatility leave the leg), so each name of a leg carries the same ex-ante volatility while the
    book stays dollar-neutral. (Poh et al., 2021, eq. 1, and Baz et al., 2015, instead scale each
    name to a target volatility and let net and gross exposure float.) ``long_only``: the long leg
    alone at gross ``gross`` (a long-only tilt; compare it with long only, not with a long-short
    book). A rebalance date without both legs (or, long only, without a long leg) gets weight 0.

    Between rebalances the weights are held (``hold="constant"``: the rebalance row repeated,
    drift-free; ``"drift"``: NaN rows, for :func:`kit.portfolio.backtest.simulate`). With
    ``"constant"`` a name whose legs value turns NaN (it left the universe or has no price) is
    closed (weight 0) and not replaced until the next rebalance, so the book is exactly
    dollar-neutral on rebalance dates and may be slightly net long or short in between. Dates
    before the first rebalance date get weight 0.

    Parameters
    ----------
    legs : (T, N) +1 / -1 / 0 / NaN (:func:`kit.features.cross_section.quantile_legs`, or a ranker's
        positions).
    rebalance : rebalance dates (a subset of ``legs.index``); default the month ends.
    gross : gross exposure, fraction of equity (> 0).
    daily_vol : optional (T, N) ex-ante volatility (any consistent unit) for inverse-volatility legs.
    long_only : keep only the long leg.
    hold : ``"constant"`` or ``"drift"``.

    Returns
    -------
    (T, N) float64 DataFrame of weights (fractions of equity), labelled like ``legs``.

    Raises
    ------
    ValueError
        ``gross <= 0``, unknown ``hold``, legs outside {-1, 0, 1, NaN}, a rebalance date not in the
        index, ``daily_vol`` of another shape.
    """
    if not gross > 0:
        raise ValueError(f"gross must be > 0, got {gross!r}")
    if hold not in ("constant", "drift"):
        raise ValueError(f"hold must be 'constant' or 'drift', got {hold!r}")
    L = legs.to_numpy(dtype="float64")
    bad = np.isfinite(L) & ~np.isin(L, (-1.0, 0.0, 1.0))
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise ValueError(f"legs must be -1, 0, 1 or NaN; got {L[t, i]} for {legs.columns[i]} on {legs.index[t].date()}")
    vol = None if daily_vol is None else _frame("daily_vol", daily_vol, legs)
    T, N = L.shape
    reb = rebalance_positions(legs.index, month_end_dates(legs.index) if rebalance is None else rebalance)
    rows = np.zeros((len(reb), N))
    for k, t in enumerate(reb):
        row = np.nan_to_num(L[t], nan=0.0)
        ok = np.ones(N, bool) if vol is None else np.isfinite(vol[t]) & (vol[t] > 0)
        sides = ((row > 0) & ok, 1.0, 1.0 if long_only else 0.5), ((row < 0) & ok, -1.0, 0.5)
        if not sides[0][0].any() or (not long_only and not sides[1][0].any()):
            continue  # no book rather than a one-sided one
        for leg, sign, share in sides[:1] if long_only else sides:
            raw = np.ones(int(leg.sum())) if vol is None else 1.0 / vol[t][leg]
            rows[k, leg] = sign * share * gross * raw / raw.sum()
    if hold == "drift":
        out = np.full((T, N), np.nan)
        out[: reb[0]] = 0.0
        out[reb] = rows
    else:
        out = np.zeros((T, N))
        bounds = np.r_[reb, T]
        for k in range(len(reb)):
            out[bounds[k] : bounds[k + 1]] = rows[k]
        out = np.where(np.isnan(L), 0.0, out)
    return pd.DataFrame(out, index=legs.index, columns=legs.columns)


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
    long_only: bool = False,
) -> pd.DataFrame:
    """Market-neutral quantile long-short weights from scores: long the top quantile, short the
    bottom one (:func:`kit.features.cross_section.quantile_legs` then :func:`leg_weights`).

    With ``vol_scale`` only names with a finite positive ``daily_vol`` on the rebalance date are
    ranked, and legs are inverse-volatility weighted.

    Parameters
    ----------
    scores : (T, N) DataFrame of scores known at the close of each date (higher = buy).
    membership : (T, N) bool point-in-time universe, or None (all True). Pass
        ``close.notna() & universe`` so that no name is held on a date without a price.
    rebalance : rebalance dates (default the month ends).
    n_quantiles, min_names : see :func:`kit.features.cross_section.quantile_legs`.
    vol_scale, daily_vol, gross, hold, long_only : see :func:`leg_weights`.

    Returns
    -------
    (T, N) float64 DataFrame of weights (fractions of equity), labelled like ``scores``.

    Raises
    ------
    ValueError
        Mismatched shapes or labels, ``vol_scale`` without ``daily_vol``, and as the two functions.
    """
    if vol_scale and daily_vol is None:
        raise ValueError("vol_scale=True needs daily_vol")
    if rebalance is None:
        rebalance = month_end_dates(scores.index)
    mask = np.ones(scores.shape, bool) if membership is None else membership
    if isinstance(mask, pd.DataFrame):
        if not (mask.index.equals(scores.index) and list(mask.columns) == list(scores.columns)):
            raise ValueError("membership must have the same dates and symbols as scores")
        mask = mask.to_numpy(dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != scores.shape:
        raise ValueError(f"membership has shape {mask.shape}, scores {scores.shape}")
    vol = None
    if vol_scale:
        vol = _frame("daily_vol", daily_vol, scores)
        mask = mask & np.isfinite(vol) & (vol > 0)
    legs = quantile_legs(scores, mask, rebalance, n_quantiles, min_names)
    return leg_weights(legs, rebalance, gross, None if vol is None else pd.DataFrame(vol, index=scores.index, columns=scores.columns),
                       long_only, hold)


def _membership(close: pd.DataFrame, membership) -> np.ndarray:
    tradable = close.notna().to_numpy()
    if membership is None:
        return tradable
    m = membership.to_numpy(dtype=bool) if isinstance(membership, pd.DataFrame) else np.asarray(membership, dtype=bool)
    if m.shape != close.shape:
        raise ValueError(f"membership has shape {m.shape}, close {close.shape}")
    return tradable & m


def _daily_vol(close: pd.DataFrame, vol_span: int) -> pd.DataFrame:
    return ex_ante_vol(daily_returns(close), span=vol_span, annualise=False)


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
    long_only: bool = False,
) -> pd.DataFrame:
    """Classical cross-sectional momentum (Jegadeesh & Titman, 1993) as ``(T, N)`` weights.

    Rank on :func:`kit.features.momentum_12_1` at each rebalance date (month ends by default), long
    the top decile and short the bottom one, dollar-neutral with gross ``gross``, equal weight or
    inverse-volatility within legs (``vol_scale``, ex-ante daily EWM volatility with span
    ``vol_span``); ``long_only`` keeps the top decile alone. Only names with a price on the date
    (and ``membership`` True, if given) are ranked or held.

    Parameters
    ----------
    close : (T, N) adjusted closes.
    membership : optional (T, N) bool point-in-time universe.
    freq : rebalance calendar (``"W"``, ``"M"``, ``"Q"``, :func:`kit.features.rebalance_dates`).

    Returns
    -------
    (T, N) float64 weights.
    """
    score = momentum_12_1(close, lookback, skip)
    vol = _daily_vol(close, vol_span) if vol_scale else None
    return decile_long_short_weights(
        score, _membership(close, membership), rebalance_dates(close.index, freq), n_quantiles, vol_scale, vol, gross, hold=hold,
        long_only=long_only,
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
    long_only: bool = False,
) -> pd.DataFrame:
    """Cross-sectional MACD ("Baz" benchmark of Poh et al., 2021) as ``(T, N)`` weights: rank on
    :func:`kit.features.macd_composite` at each rebalance date; otherwise as
    :func:`cs_momentum_weights`.

    Returns
    -------
    (T, N) float64 weights.
    """
    score = macd_composite(close).where(close.notna())
    vol = _daily_vol(close, vol_span) if vol_scale else None
    return decile_long_short_weights(
        score, _membership(close, membership), rebalance_dates(close.index, freq), n_quantiles, vol_scale, vol, gross, hold=hold,
        long_only=long_only,
    )


def cross_sectional_benchmarks(
    close: pd.DataFrame, index: pd.DatetimeIndex, freq: str = "M", n_quantiles: int = 10, gross: float = 1.0, membership=None
) -> dict[str, pd.DataFrame]:
    """The cross-sectional benchmarks of a report as weights on ``index``, computed on the full
    history of ``close`` (so the 12-month lookback exists at the first date) and sliced; rows before
    the first rebalance date inside ``index`` are 0, so every book starts flat and trades into its
    first portfolio at a rebalance close.

    Names (:data:`CS_BENCHMARK_NAMES`): ``CS momentum`` (equal-weight deciles), ``CS momentum (inv.
    vol)``, ``CS MACD`` (Baz composite), ``CS momentum top (long only)`` (the top decile alone, the
    long-only tilt to compare with long only).

    Returns
    -------
    dict name -> (len(index), N) weights.
    """
    index = pd.DatetimeIndex(index)
    reb = rebalance_dates(close.index, freq)
    reb = reb[(reb >= index[0]) & (reb <= index[-1])]

    def within(w):
        out = w.reindex(index)
        out.loc[index < reb[0] if len(reb) else np.ones(len(index), bool)] = 0.0
        return out

    kw = dict(membership=membership, freq=freq, n_quantiles=n_quantiles, gross=gross)
    return {
        CS_BENCHMARK_NAMES[0]: within(cs_momentum_weights(close, **kw)),
        CS_BENCHMARK_NAMES[1]: within(cs_momentum_weights(close, vol_scale=True, **kw)),
        CS_BENCHMARK_NAMES[2]: within(cs_macd_weights(close, **kw)),
        CS_BENCHMARK_NAMES[3]: within(cs_momentum_weights(close, long_only=True, **kw)),
    }
