"""Performance statistics of daily simple returns (annualised with 252 trading days).

The DMN paper's table columns (Lim, Zohren & Roberts, 2019: annual return, volatility, Sharpe,
Sortino, downside deviation, max drawdown, Calmar, % positive returns, average profit over average
loss) come from empyrical-reloaded where it has them; VaR and CVaR are historical
(:mod:`kit.analytics.risk`) and reported as positive loss fractions. Every Sharpe ratio of
:func:`performance_table` carries a confidence interval: the asymptotic one of Mertens (2002),
which allows for skewness and fat tails but assumes independent days, and optionally the
stationary bootstrap of Politis & Romano (1994), which also allows for serial dependence.
Selection bias and non-normality are measured by the probabilistic and deflated Sharpe ratios and
the minimum track record length of Bailey & Lopez de Prado (2012, 2014).

Conventions: ``returns`` are daily simple returns (decimal fractions); Sharpe ratios passed in or
returned are annualised (daily Sharpe times ``sqrt(252)``) unless a name says ``daily``; the risk
free rate is 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..conventions import TRADING_DAYS
from .risk import conditional_value_at_risk, value_at_risk
from .sharpe import (
    _clean,
    deflated_sharpe_ratio,
    minimum_track_record_length,
    probabilistic_sharpe_ratio,
    sharpe_ratio,
    sharpe_ratio_bootstrap_ci,
    sharpe_ratio_ci,
)

__all__ = [
    "downside_deviation",
    "avg_profit_over_avg_loss",
    "hit_rate",
    "information_ratio",
    "drawdown",
    "performance_table",
    "benchmark_comparison",
]



def downside_deviation(returns, required_return: float = 0.0, bars_per_year: float = TRADING_DAYS) -> float:
    """Annualised downside deviation ``sqrt(bars_per_year * mean(min(r - required_return, 0)^2))``
    (the mean over all bars; 252 for daily returns), ``empyrical.downside_risk``."""
    import empyrical as ep

    return float(ep.downside_risk(_clean(returns), required_return=required_return, period="daily", annualization=bars_per_year))



def avg_profit_over_avg_loss(returns) -> float:
    """``mean(r | r > 0) / |mean(r | r < 0)|``, the DMN paper's "Ave. P / Ave. L". ``inf`` with
    no losing day, 0 with no winning day, NaN with neither."""
    r = _clean(returns)
    gains, losses = r[r > 0], r[r < 0]
    if len(losses) == 0:
        return float("inf") if len(gains) else float("nan")
    return float(gains.mean() / -losses.mean()) if len(gains) else 0.0



def hit_rate(returns, positions=None) -> float:
    """Share of winning bets.

    With ``returns`` only (a strategy's ``(T,)`` daily returns): the share of days with a
    non-zero return that are positive (unlike ``pct_positive``, flat days do not count).

    With ``positions`` (``(T, N)`` decided at each close) and ``returns`` the assets' ``(T, N)``
    daily returns ``r_t = p_t / p_{t-1} - 1`` on the same labels: directional accuracy, the share
    of (t, i) with a non-zero position ``X_{t-1,i}`` and a non-zero return ``r_{t,i}`` where
    ``sign(X_{t-1,i}) == sign(r_{t,i})``. NaN where nothing qualifies.

    Raises
    ------
    ValueError
        Labels of ``positions`` and ``returns`` differ, or NaN in a strategy's ``returns``.
    """
    if positions is None:
        r = _clean(returns)
        bets = r[r != 0]
        return float((bets > 0).mean()) if len(bets) else float("nan")
    pos, ret = pd.DataFrame(positions), pd.DataFrame(returns)
    if not (pos.index.equals(ret.index) and list(pos.columns) == list(ret.columns)):
        raise ValueError("positions and returns must have the same dates and symbols")
    x = pos.to_numpy(dtype="float64")[:-1]
    y = ret.to_numpy(dtype="float64")[1:]
    bet = np.isfinite(x) & np.isfinite(y) & (x != 0) & (y != 0)
    n = int(bet.sum())
    return float((np.sign(x[bet]) == np.sign(y[bet])).sum() / n) if n else float("nan")



def information_ratio(returns: pd.Series, benchmark: pd.Series, bars_per_year: float = TRADING_DAYS) -> float:
    """Annualised information ratio ``sqrt(252) * mean(r - b) / std(r - b)`` (sample std,
    ddof 1) of the active returns against ``benchmark``, aligned on ``returns``' dates; equals
    ``empyrical.excess_sharpe * sqrt(252)``. NaN when the active return is constant (e.g. the
    benchmark against itself).

    Raises
    ------
    ValueError
        ``benchmark`` misses some of ``returns``' dates, or either has NaN.
    """
    r = pd.Series(returns).astype("float64")
    b = pd.Series(benchmark).astype("float64")
    missing = r.index.difference(b.index)
    if len(missing):
        raise ValueError(f"benchmark misses {len(missing)} of the returns' dates (first {missing[0]})")
    active = _clean(r, "returns") - _clean(b.reindex(r.index), "benchmark")
    sd = active.std(ddof=1) if len(active) > 1 else 0.0
    return float(active.mean() / sd * math.sqrt(bars_per_year)) if sd > 0 else float("nan")



def drawdown(returns: pd.Series) -> pd.Series:
    """Drawdown of the compounded equity curve, ``equity_t / max_{s<=t} equity_s - 1`` (<= 0)."""
    equity = (1.0 + returns.fillna(0.0)).cumprod()
    return equity / equity.cummax() - 1.0



def performance_table(
    returns: dict[str, pd.Series],
    turnover: dict[str, pd.Series] | None = None,
    benchmark: pd.Series | str | None = None,
    n_trials: int | None = None,
    sr_variance: float | None = None,
    bootstrap: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    bars_per_year: float = TRADING_DAYS,
) -> pd.DataFrame:
    """The DMN paper's statistics for each strategy, one row per strategy.

    Columns: ``annual_return`` (CAGR), ``annual_volatility``, ``sharpe_ratio`` with ``sharpe_ci_low``
    and ``sharpe_ci_high`` (:func:`sharpe_ratio_ci`), ``sortino_ratio``, ``max_drawdown``
    (negative fraction), ``calmar_ratio``, ``pct_positive`` (share of days with a positive return),
    ``downside_deviation`` (annualised), ``avg_profit_over_avg_loss``, ``hit_rate``
    (:func:`hit_rate`), ``value_at_risk`` and ``conditional_value_at_risk`` (historical one-day,
    positive loss fractions at ``level``), ``probabilistic_sharpe_ratio`` (against 0),
    ``min_track_record_length`` (days for PSR(0) to reach ``level``); then, when asked,
    ``information_ratio`` (against ``benchmark``), ``deflated_sharpe_ratio`` (``n_trials``),
    ``sharpe_boot_low`` and ``sharpe_boot_high`` (``bootstrap``; :func:`sharpe_ratio_bootstrap_ci`,
    mean block length estimated per strategy), ``turnover`` (mean daily one-way turnover of
    target weights, if given); ``days``, ``start``, ``end``. Ratios from empyrical-reloaded.

    Parameters
    ----------
    returns : name -> (T_s,) daily returns with a DatetimeIndex.
    turnover : name -> daily turnover series (e.g. :func:`kit.portfolio.turnover`).
    benchmark : returns Series, or the name of an entry of ``returns``, for the information ratio.
    n_trials : number of configurations tried, for the deflated Sharpe ratio.
    sr_variance : variance of the trials' annualised Sharpe ratios (see
        :func:`deflated_sharpe_ratio` for the default).
    bootstrap : add the stationary-bootstrap interval (about 0.1 s per strategy of 5,000 days
        with ``n_boot=1000``).
    n_boot, seed : of the bootstrap.
    level : of every interval, VaR, CVaR and the minimum track record length (default 0.95).
    bars_per_year : annualisation factor of the returns' bars (default 252, daily bars; take it from
        the data, :attr:`kit.data.ValidationReport.bars_per_year`).

    Raises
    ------
    ValueError
        A strategy's returns contain NaN inside its range (a silent NaN would bias every ratio),
        or ``benchmark`` names no strategy or misses dates.
    """
    import empyrical as ep

    if isinstance(benchmark, str):
        if benchmark not in returns:
            raise ValueError(f"benchmark {benchmark!r} is not one of the strategies {list(returns)}")
        benchmark = returns[benchmark]
    rows = {}
    for name, r in returns.items():
        r = pd.Series(r).astype("float64")
        if r.isna().any():
            raise ValueError(f"returns[{name!r}] has {int(r.isna().sum())} NaN values")
        sr, lo, hi = sharpe_ratio_ci(r, level, bars_per_year)
        ann = {"period": "daily", "annualization": bars_per_year}
        row = {
            "annual_return": ep.annual_return(r, **ann),
            "annual_volatility": ep.annual_volatility(r, **ann),
            "sharpe_ratio": sharpe_ratio(r, bars_per_year),
            "sharpe_ci_low": lo,
            "sharpe_ci_high": hi,
            "sortino_ratio": ep.sortino_ratio(r, **ann),
            "max_drawdown": ep.max_drawdown(r),
            "calmar_ratio": ep.calmar_ratio(r, **ann),
            "pct_positive": float((r > 0).mean()),
            "downside_deviation": downside_deviation(r, bars_per_year=bars_per_year),
            "avg_profit_over_avg_loss": avg_profit_over_avg_loss(r),
            "hit_rate": hit_rate(r),
            "value_at_risk": value_at_risk(r, level),
            "conditional_value_at_risk": conditional_value_at_risk(r, level),
        }
        valid = len(r) >= 3 and r.std(ddof=1) > 0
        row["probabilistic_sharpe_ratio"] = probabilistic_sharpe_ratio(r, 0.0, bars_per_year) if valid else float("nan")
        row["min_track_record_length"] = minimum_track_record_length(r, 0.0, level, bars_per_year) if valid else float("nan")
        if benchmark is not None:
            row["information_ratio"] = information_ratio(r, benchmark, bars_per_year)
        if n_trials is not None:
            row["deflated_sharpe_ratio"] = (deflated_sharpe_ratio(r, n_trials, sr_variance, bars_per_year=bars_per_year)
                                            if valid else float("nan"))
        if bootstrap:
            _, blo, bhi = (sharpe_ratio_bootstrap_ci(r, level, n_boot, seed=seed, bars_per_year=bars_per_year)
                           if valid else (float("nan"),) * 3)
            row["sharpe_boot_low"], row["sharpe_boot_high"] = blo, bhi
        if turnover is not None and name in turnover:
            row["turnover"] = float(turnover[name].mean())
        row.update(days=len(r), start=r.index[0].date().isoformat(), end=r.index[-1].date().isoformat())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")




def benchmark_comparison(
    returns: dict[str, pd.Series], benchmarks: dict[str, str], n_trials: int, level: float = 0.95, threshold: float = 0.95
) -> pd.DataFrame:
    """Each strategy against its proper benchmark, on their common dates.

    The question "does the strategy beat its benchmark?" is asked of the daily active return
    ``a_t = r_{s,t} - r_{b,t}`` (a long-short book against cross-sectional momentum, a long-only tilt
    against long only): its annualised Sharpe ratio (the information ratio) with the Mertens (2002)
    interval, its probabilistic Sharpe ratio against 0 and its deflated Sharpe ratio for
    ``n_trials`` configurations (Bailey & Lopez de Prado, 2012, 2014). ``beats_benchmark`` is
    ``active_dsr > threshold``: the active return's Sharpe ratio is above what the best of
    ``n_trials`` skill-less configurations would show, at confidence ``threshold``.

    Parameters
    ----------
    returns : name -> (T_s,) daily returns (strategies and benchmarks).
    benchmarks : strategy name -> the name of its benchmark in ``returns`` (strategies not listed
        are left out).
    n_trials : configurations tried (every model, variant and benchmark of the comparison).
    level : of the intervals. threshold : of the verdict.

    Returns
    -------
    DataFrame, one row per strategy: ``benchmark``, ``days``, ``sharpe_ratio``,
    ``benchmark_sharpe``, ``sharpe_difference``, ``deflated_sharpe_ratio`` (the strategy's own),
    ``active_sharpe``, ``active_ci_low``, ``active_ci_high``, ``active_psr``, ``active_dsr``,
    ``beats_benchmark`` (bool).

    Raises
    ------
    ValueError
        A strategy or benchmark name not in ``returns``, ``n_trials < 1``, or fewer than 3 common days.
    """
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    rows = {}
    for name, bench in benchmarks.items():
        for key in (name, bench):
            if key not in returns:
                raise ValueError(f"{key!r} is not one of the strategies {list(returns)}")
        both = pd.concat([pd.Series(returns[name], dtype="float64"), pd.Series(returns[bench], dtype="float64")], axis=1, join="inner").dropna()
        if len(both) < 3:
            raise ValueError(f"{name!r} and {bench!r} share {len(both)} days; need at least 3")
        r, b = both.iloc[:, 0], both.iloc[:, 1]
        a = r - b
        valid = a.std(ddof=1) > 0
        sr, lo, hi = sharpe_ratio_ci(a, level) if valid else (float("nan"),) * 3
        rows[name] = {
            "benchmark": bench,
            "days": len(both),
            "sharpe_ratio": sharpe_ratio(r),
            "benchmark_sharpe": sharpe_ratio(b),
            "sharpe_difference": sharpe_ratio(r) - sharpe_ratio(b),
            "deflated_sharpe_ratio": deflated_sharpe_ratio(r, int(n_trials)) if r.std(ddof=1) > 0 else float("nan"),
            "active_sharpe": sr,
            "active_ci_low": lo,
            "active_ci_high": hi,
            "active_psr": probabilistic_sharpe_ratio(a) if valid else float("nan"),
            "active_dsr": deflated_sharpe_ratio(a, int(n_trials)) if valid else float("nan"),
        }
        rows[name]["beats_benchmark"] = bool(valid and rows[name]["active_dsr"] > threshold)
    return pd.DataFrame.from_dict(rows, orient="index")
