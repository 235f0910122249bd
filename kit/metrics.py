"""Performance statistics of daily simple returns (annualised with 252 trading days).

The ratios come from empyrical-reloaded; the Sharpe confidence interval uses the asymptotic
standard error of Mertens (2002), which allows for skewness and fat tails but assumes independent
days.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["sharpe_ratio_ci", "performance_table", "drawdown"]

TRADING_DAYS = 252


def sharpe_ratio_ci(returns: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Annualised Sharpe ratio and its confidence interval.

    ``SE(SR_d) = sqrt((1 + SR_d^2 / 2 - skew * SR_d + (kurt - 3) / 4 * SR_d^2) / n)`` for the daily
    Sharpe ``SR_d`` (Mertens, 2002; Lo, 2002 when returns are normal); the interval
    ``(SR_d +- z * SE) * sqrt(252)``.

    Returns
    -------
    (sharpe_ratio, low, high) annualised. NaN triple for fewer than 3 observations.
    """
    from scipy import stats

    r = pd.Series(returns).dropna().to_numpy(dtype="float64")
    n = len(r)
    if n < 3 or r.std(ddof=1) == 0:
        return (float("nan"),) * 3
    sr = r.mean() / r.std(ddof=1)
    skew = float(stats.skew(r))
    kurt = float(stats.kurtosis(r, fisher=False))
    var = (1 + 0.5 * sr**2 - skew * sr + (kurt - 3) / 4 * sr**2) / n
    z = stats.norm.ppf(0.5 + level / 2)
    se = math.sqrt(max(var, 0.0))
    a = math.sqrt(TRADING_DAYS)
    return sr * a, (sr - z * se) * a, (sr + z * se) * a


def drawdown(returns: pd.Series) -> pd.Series:
    """Drawdown of the compounded equity curve, ``equity_t / max_{s<=t} equity_s - 1`` (<= 0)."""
    equity = (1.0 + returns.fillna(0.0)).cumprod()
    return equity / equity.cummax() - 1.0


def performance_table(returns: dict[str, pd.Series], turnover: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """The DMN paper's statistics for each strategy, one row per strategy.

    Columns: ``annual_return`` (CAGR), ``annual_volatility``, ``sharpe_ratio`` with ``sharpe_ci_low``
    and ``sharpe_ci_high`` (95 %, :func:`sharpe_ratio_ci`), ``sortino_ratio``, ``max_drawdown``
    (negative fraction), ``calmar_ratio``, ``pct_positive`` (share of days with a positive return),
    ``turnover`` (mean daily one-way turnover of target weights, if given), ``days``, ``start``,
    ``end``. Ratios from empyrical-reloaded.

    Raises
    ------
    ValueError
        A strategy's returns contain NaN inside its range (a silent NaN would bias every ratio).
    """
    import empyrical as ep

    rows = {}
    for name, r in returns.items():
        r = pd.Series(r).astype("float64")
        if r.isna().any():
            raise ValueError(f"returns[{name!r}] has {int(r.isna().sum())} NaN values")
        sr, lo, hi = sharpe_ratio_ci(r)
        row = {
            "annual_return": ep.annual_return(r, period="daily"),
            "annual_volatility": ep.annual_volatility(r, period="daily"),
            "sharpe_ratio": ep.sharpe_ratio(r, period="daily"),
            "sharpe_ci_low": lo,
            "sharpe_ci_high": hi,
            "sortino_ratio": ep.sortino_ratio(r, period="daily"),
            "max_drawdown": ep.max_drawdown(r),
            "calmar_ratio": ep.calmar_ratio(r, period="daily"),
            "pct_positive": float((r > 0).mean()),
        }
        if turnover is not None and name in turnover:
            row["turnover"] = float(turnover[name].mean())
        row.update(days=len(r), start=r.index[0].date().isoformat(), end=r.index[-1].date().isoformat())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
