"""Factor analysis of any ``(T, N)`` scores: information coefficients, quantile returns, turnover.

The statistics are alphalens' (alphalens-reloaded 0.5.1, the maintained fork of Quantopian's
alphalens), called on its tidy ``(date, asset)`` frame:

- rank IC per date: the Spearman correlation of ``alphalens.performance.factor_information_coefficient``
  (``scipy.stats.spearmanr`` per date), computed here as the Pearson correlation of the within-date
  average ranks (the same number, tested equal to alphalens'; alphalens' per-date loop took 30 s
  on 100 stocks x 2,600 days, this takes well under a second);
- IC summary (mean, std, risk-adjusted IC, t-stat, p-value, skew, kurtosis):
  ``alphalens.plotting.plot_information_table(..., return_df=True)``;
- mean forward return by quantile (with standard errors), by date or pooled:
  ``alphalens.performance.mean_return_by_quantile``;
- top-minus-bottom spread: ``alphalens.performance.compute_mean_returns_spread``, which (since
  0.5) halves the difference so the spread is a gross-1 book (0.5 long, 0.5 short), the same
  scale as :func:`kit.portfolio.cross_sectional.decile_long_short_weights`;
- factor rank autocorrelation: ``alphalens.performance.factor_rank_autocorrelation``;
- turnover by quantile (share of names new to the quantile): ``alphalens.performance.quantile_turnover``.

Added here, because alphalens does not have them: the Pearson IC per date, Newey-West t-statistics
(forward returns over h days overlap when scores are daily, so successive ICs are correlated and
the plain t-stat of alphalens overstates significance), and the IC decay table over horizons.

Two deliberate departures from ``alphalens.utils.get_clean_factor_and_forward_returns`` (the tidy
frame is built here; alphalens documents that this is allowed when the frame has its format):
forward returns are :func:`kit.features.forward_returns`, ``close_{t+h} / close_t - 1`` with NaN
across a missing price (alphalens forward-fills prices, so a delisted name earns 0 after its last
price), and quantiles are :func:`kit.features.quantile_buckets`, equal to alphalens'
``pd.qcut`` rule when the count is a multiple of the quantile count and there are no ties, but
never failing on ties (``qcut`` drops such dates). The portfolio and the factor analysis thus
bucket names identically.

Timing: a score at t is known at the close of t; its forward return runs from the close of t to
the close of t+h (the kit's convention).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..features import forward_returns, quantile_buckets

__all__ = [
    "HORIZONS",
    "factor_data",
    "information_coefficient",
    "newey_west_tstat",
    "ic_summary",
    "ic_decay",
    "quantile_returns",
    "long_short_spread",
    "rank_autocorrelation",
    "quantile_turnover",
    "factor_report",
]

HORIZONS = (1, 5, 21)
"""Forward-return horizons in trading days (a day, a week, a month)."""


def _alphalens():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alphalens  # noqa: F401
        import alphalens.performance as perf
        import alphalens.plotting as plotting
    return perf, plotting


def _label(h: int) -> str:
    return f"{int(h)}D"


def _horizon_columns(fd: pd.DataFrame) -> list[str]:
    return [c for c in fd.columns if c.endswith("D") and c[:-1].isdigit()]


def factor_data(
    scores: pd.DataFrame,
    close: pd.DataFrame,
    horizons=HORIZONS,
    membership=None,
    n_quantiles: int = 5,
) -> pd.DataFrame:
    """The alphalens tidy frame of a score: one row per (date, asset) with a finite score, forward
    returns for every horizon, and a quantile.

    Parameters
    ----------
    scores : (T, N) DataFrame of scores known at each close (NaN = no score, e.g. off a rebalance
        date).
    close : (T, N) adjusted closes, same labels.
    horizons : forward-return horizons in trading days (columns ``"1D"``, ``"5D"``, ...: alphalens
        names; here they count trading days, not calendar days).
    membership : optional (T, N) bool point-in-time universe; scores outside it are dropped.
    n_quantiles : quantile buckets per date (:func:`kit.features.quantile_buckets`).

    Returns
    -------
    DataFrame indexed by (date, asset) with float64 forward-return columns, ``factor`` and
    ``factor_quantile`` (int64). Rows whose forward return for *any* horizon is missing are
    dropped (as alphalens does); ``frame.attrs`` holds ``dropped_fraction`` (of finite scores),
    ``horizons`` and ``date_spacing`` (median trading days between successive score dates).

    Raises
    ------
    ValueError
        Labels differ, bad horizons, or no row survives.
    """
    if not (scores.index.equals(close.index) and list(scores.columns) == list(close.columns)):
        raise ValueError("scores and close must have the same dates and symbols")
    horizons = tuple(int(h) for h in horizons)
    if not horizons or min(horizons) < 1:
        raise ValueError(f"horizons must be positive integers, got {horizons!r}")
    s = scores.astype("float64")
    if membership is not None:
        m = np.asarray(membership, dtype=bool)
        if m.shape != s.shape:
            raise ValueError(f"membership has shape {m.shape}, scores {s.shape}")
        s = s.where(m)
    s = s.where(np.isfinite(s.to_numpy()))
    fwd = forward_returns(close, horizons).values  # (T, N, H)
    sv = s.to_numpy()
    keep = np.isfinite(sv) & np.isfinite(fwd).all(axis=2)
    # bucketed after dropping rows without every forward return, as alphalens' get_clean_factor
    q = quantile_buckets(s, keep, n_quantiles).to_numpy()
    ti, ni = np.nonzero(keep)
    n_scores = int(np.isfinite(sv).sum())
    if len(ti) == 0:
        raise ValueError("factor_data: no (date, asset) has both a score and every forward return")
    idx = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(scores.index[ti], freq=None), pd.Index(scores.columns[ni])], names=["date", "asset"]
    )
    out = pd.DataFrame({_label(h): fwd[ti, ni, k] for k, h in enumerate(horizons)}, index=idx)
    out["factor"] = sv[ti, ni]
    out["factor_quantile"] = q[ti, ni].astype(np.int64)
    dates = np.unique(ti)
    out.attrs.update(
        dropped_fraction=1.0 - len(ti) / n_scores,
        horizons=horizons,
        date_spacing=float(np.median(np.diff(dates))) if len(dates) > 1 else 1.0,
    )
    return out


def information_coefficient(fd: pd.DataFrame, method: str = "spearman") -> pd.DataFrame:
    """Per-date information coefficient between the factor and each forward return.

    ``pearson``: the Pearson correlation
    ``sum (f - f_bar)(r - r_bar) / sqrt(sum (f - f_bar)^2 sum (r - r_bar)^2)`` across assets on
    each date (alphalens has only the rank IC). ``spearman`` (rank IC): the same on the factor's
    and the returns' within-date average ranks (ties share their mean rank), which is
    ``scipy.stats.spearmanr`` and so alphalens' ``factor_information_coefficient`` (tested equal).
    NaN on dates with fewer than 2 assets or no dispersion.

    Parameters
    ----------
    fd : the frame of :func:`factor_data`.
    method : ``"spearman"`` or ``"pearson"``.

    Returns
    -------
    DataFrame (dates x horizon columns) of ICs in [-1, 1].

    Raises
    ------
    ValueError
        Unknown ``method``.
    """
    cols = _horizon_columns(fd)
    if method in ("spearman", "pearson"):
        g = fd.index.get_level_values("date")
        f = fd["factor"].groupby(g).rank(method="average") if method == "spearman" else fd["factor"]
        fc = f - f.groupby(g).transform("mean")
        out = {}
        for c in cols:
            r = fd[c].groupby(g).rank(method="average") if method == "spearman" else fd[c]
            rc = r - r.groupby(g).transform("mean")
            num = (fc * rc).groupby(g).sum()
            den = np.sqrt((fc**2).groupby(g).sum() * (rc**2).groupby(g).sum())
            out[c] = (num / den.where(den > 0)).astype("float64")
        res = pd.DataFrame(out)
        res.index.name = "date"
        return res
    raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")


def newey_west_tstat(x, lags: int) -> float:
    """t-statistic of the mean of ``x`` with the Newey & West (1987) standard error.

    ``t = x_bar / sqrt(S / n)`` with the Bartlett-kernel long-run variance
    ``S = g_0 + 2 sum_{l=1}^{L} (1 - l / (L + 1)) g_l``, ``g_l = (1/n) sum_t (x_t - x_bar)(x_{t-l} - x_bar)``
    (no small-sample correction; equals statsmodels' ``OLS(x, 1).fit(cov_type="HAC",
    cov_kwds={"maxlags": L, "use_correction": False})``). ``lags=0`` gives ``x_bar / (s / sqrt(n))``
    with the biased (ddof 0) std. NaN values are dropped; NaN for fewer than 2 values or zero variance.

    Raises
    ------
    ValueError
        ``lags`` negative.
    """
    if int(lags) != lags or lags < 0:
        raise ValueError(f"lags must be a non-negative integer, got {lags!r}")
    v = np.asarray(x, dtype="float64")
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return float("nan")
    d = v - v.mean()
    s = d @ d / n
    for lag in range(1, min(int(lags), n - 1) + 1):
        s += 2.0 * (1.0 - lag / (lags + 1.0)) * (d[lag:] @ d[:-lag]) / n
    return float(v.mean() / math.sqrt(s / n)) if s > 0 else float("nan")


def _nw_lags(fd: pd.DataFrame, col: str) -> int:
    """Overlapping observations for horizon ``col``: ``ceil(h / spacing) - 1``, where ``spacing``
    is the median number of trading days between successive score dates."""
    h = int(col[:-1])
    spacing = float(fd.attrs.get("date_spacing", 1.0)) or 1.0
    return max(int(math.ceil(h / spacing - 1e-9)) - 1, 0)


def ic_summary(fd: pd.DataFrame, method: str = "spearman", ic: pd.DataFrame | None = None) -> pd.DataFrame:
    """IC statistics per horizon: alphalens' information table plus a Newey-West t-stat.

    Columns: ``IC Mean``, ``IC Std.``, ``Risk-Adjusted IC`` (mean / std), ``t-stat(IC)`` and
    ``p-value(IC)`` (one-sample t-test of the per-date ICs against 0, as
    ``alphalens.plotting.plot_information_table``), ``IC Skew``, ``IC Kurtosis``, then
    ``t-stat(IC) NW`` (:func:`newey_west_tstat` with ``nw_lags`` = the number of overlapping
    forward-return windows, ``ceil(h / spacing) - 1``) and ``n_dates``.

    ``ic``: the per-date ICs of ``method`` when computed already (:func:`information_coefficient`).

    Returns
    -------
    DataFrame indexed by horizon column (``"1D"``, ...).
    """
    _, plotting = _alphalens()
    ic = information_coefficient(fd, method) if ic is None else ic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = plotting.plot_information_table(ic, return_df=True)
    table["nw_lags"] = [_nw_lags(fd, c) for c in ic.columns]
    table["t-stat(IC) NW"] = [newey_west_tstat(ic[c], _nw_lags(fd, c)) for c in ic.columns]
    table["n_dates"] = ic.notna().sum()
    table.index.name = "horizon"
    return table


def ic_decay(fd: pd.DataFrame, rank_summary: pd.DataFrame | None = None, pearson_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """IC decay: mean Pearson IC and mean rank IC by horizon, with Newey-West t-stats.

    ``rank_summary`` and ``pearson_summary``: the :func:`ic_summary` tables when computed already.

    Returns
    -------
    DataFrame indexed by horizon in trading days (int) with ``ic``, ``ic_t_nw``, ``rank_ic``,
    ``rank_ic_t``, ``rank_ic_t_nw``.
    """
    rank = ic_summary(fd, "spearman") if rank_summary is None else rank_summary
    lin = ic_summary(fd, "pearson") if pearson_summary is None else pearson_summary
    out = pd.DataFrame(
        {
            "ic": lin["IC Mean"],
            "ic_t_nw": lin["t-stat(IC) NW"],
            "rank_ic": rank["IC Mean"],
            "rank_ic_t": rank["t-stat(IC)"],
            "rank_ic_t_nw": rank["t-stat(IC) NW"],
        }
    )
    out.index = [int(c[:-1]) for c in out.index]
    out.index.name = "horizon"
    return out


def quantile_returns(fd: pd.DataFrame, by_date: bool = False, demeaned: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean forward return by quantile (``alphalens.performance.mean_return_by_quantile``).

    ``by_date=False``: the mean over dates of each quantile's equal-weighted mean forward return,
    and its standard error (std over dates / sqrt(dates)). ``by_date=True``: one row per
    (quantile, date). ``demeaned`` subtracts each date's cross-sectional mean first. Returns are
    h-day simple returns per horizon column (not per day).

    Returns
    -------
    (mean, std_error) DataFrames, horizon columns.
    """
    perf, _ = _alphalens()
    return perf.mean_return_by_quantile(fd, by_date=by_date, demeaned=demeaned)


def long_short_spread(fd: pd.DataFrame, upper: int | None = None, lower: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-minus-bottom quantile spread per date and its summary.

    Per date: ``(mean r of quantile upper - mean r of quantile lower) / 2``, alphalens'
    ``compute_mean_returns_spread`` (a gross-1, dollar-neutral book: 0.5 long, 0.5 short). For
    ``h > 1`` successive daily spreads overlap; the summary's Newey-West t-stat accounts for it.

    Parameters
    ----------
    upper : top quantile (default the largest in ``fd``); lower : bottom quantile (1).

    Returns
    -------
    (spread, summary): spread is a DataFrame (dates x horizons) of h-day returns; summary is
    indexed by horizon with ``mean``, ``std``, ``t_stat`` (mean / (std / sqrt(n)), ddof 1),
    ``t_stat_nw``, ``n_dates``.
    """
    perf, _ = _alphalens()
    upper = int(fd["factor_quantile"].max()) if upper is None else int(upper)
    mean, se = perf.mean_return_by_quantile(fd, by_date=True, demeaned=False)
    spread, _ = perf.compute_mean_returns_spread(mean, upper, lower, se)
    spread = spread.dropna(how="all")
    rows = {}
    for c in spread.columns:
        x = spread[c].dropna()
        n = len(x)
        sd = x.std(ddof=1)
        rows[c] = {
            "mean": x.mean(),
            "std": sd,
            "t_stat": x.mean() / (sd / math.sqrt(n)) if n > 1 and sd > 0 else float("nan"),
            "t_stat_nw": newey_west_tstat(x, _nw_lags(fd, c)),
            "n_dates": n,
        }
    summary = pd.DataFrame(rows).T
    summary.index.name = "horizon"
    return spread, summary


def rank_autocorrelation(fd: pd.DataFrame, lag: int = 1) -> pd.Series:
    """Factor rank autocorrelation (``alphalens.performance.factor_rank_autocorrelation``): the
    correlation across assets between each date's factor ranks and those ``lag`` score dates
    earlier (observed dates: for monthly scores, the previous rebalance). Near 1 = slow factor,
    low turnover. Series indexed by date."""
    perf, _ = _alphalens()
    return perf.factor_rank_autocorrelation(fd, period=lag)


def quantile_turnover(fd: pd.DataFrame, lag: int = 1) -> pd.DataFrame:
    """Turnover by quantile (``alphalens.performance.quantile_turnover``): the share of names in
    quantile q on a date that were not in q ``lag`` score dates earlier. DataFrame (dates x
    quantiles)."""
    perf, _ = _alphalens()
    qs = sorted(int(q) for q in fd["factor_quantile"].unique())
    return pd.concat([perf.quantile_turnover(fd["factor_quantile"], q, lag) for q in qs], axis=1)


def factor_report(
    scores: pd.DataFrame,
    close: pd.DataFrame,
    horizons=HORIZONS,
    membership=None,
    n_quantiles: int = 5,
) -> dict:
    """Every statistic of this module for one score, as a dict of tables (notebook-friendly).

    Keys: ``factor_data``, ``ic`` and ``rank_ic`` (per date), ``ic_summary`` and
    ``rank_ic_summary``, ``ic_decay``, ``quantile_returns`` (mean h-day return by quantile) and
    ``quantile_returns_se``, ``spread`` (per date) and ``spread_summary``,
    ``rank_autocorrelation`` (per date), ``turnover`` (per date and quantile),
    ``summary`` (one row: mean rank IC and NW t per horizon, mean autocorrelation, mean top and
    bottom quantile turnover, dropped fraction).

    Parameters
    ----------
    As :func:`factor_data`.
    """
    fd = factor_data(scores, close, horizons, membership, n_quantiles)
    mean_q, se_q = quantile_returns(fd)
    spread, spread_summary = long_short_spread(fd)
    ic_rank, ic_lin = information_coefficient(fd, "spearman"), information_coefficient(fd, "pearson")
    rank_sum, lin_sum = ic_summary(fd, "spearman", ic_rank), ic_summary(fd, "pearson", ic_lin)
    ac = rank_autocorrelation(fd)
    to = quantile_turnover(fd)
    top, bottom = int(fd["factor_quantile"].max()), 1
    summary = {"dropped_fraction": fd.attrs["dropped_fraction"], "rank_autocorrelation": float(ac.mean())}
    for c in rank_sum.index:
        summary[f"rank_ic_{c}"] = float(rank_sum.loc[c, "IC Mean"])
        summary[f"rank_ic_t_nw_{c}"] = float(rank_sum.loc[c, "t-stat(IC) NW"])
        summary[f"spread_{c}"] = float(spread_summary.loc[c, "mean"])
    summary["ic_1D" if "1D" in lin_sum.index else f"ic_{lin_sum.index[0]}"] = float(lin_sum["IC Mean"].iloc[0])
    summary["turnover_top"] = float(to[top].mean())
    summary["turnover_bottom"] = float(to[bottom].mean())
    return {
        "factor_data": fd,
        "ic": ic_lin,
        "rank_ic": ic_rank,
        "ic_summary": lin_sum,
        "rank_ic_summary": rank_sum,
        "ic_decay": ic_decay(fd, rank_sum, lin_sum),
        "quantile_returns": mean_q,
        "quantile_returns_se": se_q,
        "spread": spread,
        "spread_summary": spread_summary,
        "rank_autocorrelation": ac,
        "turnover": to,
        "summary": pd.Series(summary),
    }
