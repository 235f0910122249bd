"""Performance statistics of daily simple returns (annualised with 252 trading days).

The DMN paper's table columns (Lim, Zohren & Roberts, 2019: annual return, volatility, Sharpe,
Sortino, downside deviation, max drawdown, Calmar, % positive returns, average profit over average
loss) come from empyrical-reloaded where it has them; VaR and CVaR are historical (empyrical's
percentile conventions) and reported as positive loss fractions. Every Sharpe ratio of
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

__all__ = [
    "TRADING_DAYS",
    "EULER_MASCHERONI",
    "sharpe_ratio",
    "sharpe_ratio_ci",
    "sharpe_ratio_bootstrap_ci",
    "probabilistic_sharpe_ratio",
    "expected_max_sharpe",
    "deflated_sharpe_ratio",
    "minimum_track_record_length",
    "downside_deviation",
    "avg_profit_over_avg_loss",
    "hit_rate",
    "information_ratio",
    "value_at_risk",
    "conditional_value_at_risk",
    "drawdown",
    "performance_table",
]

TRADING_DAYS = 252
EULER_MASCHERONI = 0.5772156649015329


def _clean(returns, name: str = "returns") -> np.ndarray:
    """1-D float64 array of the returns; NaN refused (a silent NaN would bias every statistic)."""
    r = np.asarray(pd.Series(returns).to_numpy(dtype="float64"))
    if r.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {r.shape}")
    if np.isnan(r).any():
        raise ValueError(f"{name} has {int(np.isnan(r).sum())} NaN values")
    return r


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def sharpe_ratio(returns) -> float:
    """Annualised Sharpe ratio ``sqrt(252) * mean(r) / std(r)`` (sample std, ddof 1; risk-free
    rate 0), as ``empyrical.sharpe_ratio``. NaN for fewer than 2 observations or zero
    dispersion."""
    r = _clean(returns)
    if len(r) < 2:
        return float("nan")
    sd = r.std(ddof=1)
    return float(r.mean() / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else float("nan")


def _moments(r: np.ndarray) -> tuple[float, int, float, float]:
    """(daily Sharpe with ddof-1 std, n, skewness, kurtosis (normal = 3)), biased moment estimates
    for the higher moments as in Bailey & Lopez de Prado (2012)."""
    from scipy import stats

    n = len(r)
    sd = r.std(ddof=1) if n > 1 else 0.0
    if n < 3 or sd == 0:
        raise ValueError(f"returns: need at least 3 observations with non-zero dispersion (got n={n}, std={sd})")
    return float(r.mean() / sd), n, float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))


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


def _bootstrap_sharpes(r: np.ndarray, n_boot: int, mean_block: float, seed: int) -> np.ndarray:
    """``(n_boot,)`` annualised Sharpe ratios of stationary-bootstrap resamples of ``r``."""
    from arch.bootstrap import StationaryBootstrap

    bs = StationaryBootstrap(mean_block, r, seed=np.random.default_rng(seed))
    idx = np.stack([bs.update_indices() for _ in range(n_boot)])  # (n_boot, n) resample indices
    x = r[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        return x.mean(axis=1) / x.std(axis=1, ddof=1) * math.sqrt(TRADING_DAYS)


def sharpe_ratio_bootstrap_ci(
    returns, level: float = 0.95, n_boot: int = 1000, mean_block: float | None = None, seed: int = 0
) -> tuple[float, float, float]:
    """Annualised Sharpe ratio with a stationary-bootstrap percentile confidence interval.

    The stationary bootstrap (Politis & Romano, 1994) resamples blocks of consecutive days whose
    lengths are geometric with mean ``mean_block`` (wrapping around the end), so the resamples
    keep the serial dependence and volatility clustering that the Mertens interval ignores. The
    resample indices come from ``arch.bootstrap.StationaryBootstrap`` (one generator seeded with
    ``seed``); the Sharpe ratios of the ``n_boot`` resamples are computed at once and the
    interval is their ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles (the same numbers as
    ``StationaryBootstrap(...).conf_int(method="percentile")``; tested).

    Parameters
    ----------
    returns : (T,) daily returns, no NaN.
    level : confidence level (default 0.95).
    n_boot : number of resamples (default 1000; memory ``8 * n_boot * T`` bytes).
    mean_block : mean block length in days; None (default) takes the Politis & White (2004)
        estimate of ``arch.bootstrap.optimal_block_length`` (Patton, Politis & White, 2009),
        at least 1.
    seed : seed of the generator; the same seed gives the same interval.

    Returns
    -------
    (sharpe_ratio, low, high), annualised.

    Raises
    ------
    ValueError
        NaN returns, fewer than 3 observations, zero dispersion, ``level`` outside (0, 1),
        ``n_boot < 2`` or ``mean_block < 1``.
    """
    _check_level(level)
    r = _clean(returns)
    _moments(r)  # validates length and dispersion
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if mean_block is None:
        from arch.bootstrap import optimal_block_length

        mean_block = max(1.0, float(optimal_block_length(r)["stationary"].iloc[0]))
    if not mean_block >= 1:
        raise ValueError(f"mean_block must be >= 1 day, got {mean_block}")
    boot = _bootstrap_sharpes(r, int(n_boot), float(mean_block), seed)
    lo, hi = np.nanpercentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return sharpe_ratio(r), float(lo), float(hi)


def _psr(sr_d: float, sr_star_d: float, n: float, skew: float, kurt: float) -> float:
    from scipy import stats

    denom = 1.0 - skew * sr_d + (kurt - 1.0) / 4.0 * sr_d**2
    return float(stats.norm.cdf((sr_d - sr_star_d) * math.sqrt(n - 1.0) / math.sqrt(denom)))


def probabilistic_sharpe_ratio(returns, sr_benchmark: float = 0.0) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & Lopez de Prado,
    2012, "The Sharpe Ratio Efficient Frontier", eq. 11).

    ``PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with the daily
    Sharpe ``SR`` (sample std, ddof 1), ``SR* = sr_benchmark / sqrt(252)``, ``n`` observations,
    skewness ``g3`` and kurtosis ``g4`` (3 for a normal) of the returns.

    Parameters
    ----------
    returns : (T,) daily returns, no NaN, at least 3.
    sr_benchmark : annualised benchmark Sharpe ratio (default 0).

    Returns
    -------
    float in [0, 1].
    """
    sr, n, skew, kurt = _moments(_clean(returns))
    return _psr(sr, sr_benchmark / math.sqrt(TRADING_DAYS), n, skew, kurt)


def expected_max_sharpe(n_trials: int, sr_variance: float, sr_mean: float = 0.0) -> float:
    """Expected maximum of ``n_trials`` independent Sharpe estimates with mean ``sr_mean`` and
    variance ``sr_variance`` (Bailey & Lopez de Prado, 2014, "The Deflated Sharpe Ratio", eq. 2;
    Bailey, Borwein, Lopez de Prado & Zhu, 2014):

    ``E[max SR_n] ~ sr_mean + sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``

    with the Euler-Mascheroni constant ``gamma``. One trial has no selection: ``sr_mean``. The
    units are those of the inputs (annualised Sharpe ratios and their variance in the kit).

    Raises
    ------
    ValueError
        ``n_trials < 1`` or a negative ``sr_variance``.
    """
    from scipy import stats

    if n_trials < 1 or int(n_trials) != n_trials:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials}")
    if not sr_variance >= 0:
        raise ValueError(f"sr_variance must be >= 0, got {sr_variance}")
    if n_trials == 1:
        return float(sr_mean)
    g = EULER_MASCHERONI
    z = (1 - g) * stats.norm.ppf(1 - 1 / n_trials) + g * stats.norm.ppf(1 - 1 / (n_trials * math.e))
    return float(sr_mean + math.sqrt(sr_variance) * z)


def deflated_sharpe_ratio(
    returns, n_trials: int | None = None, sr_variance: float | None = None, trial_sharpes=None
) -> float:
    """Deflated Sharpe ratio (Bailey & Lopez de Prado, 2014, eq. 1-2): the probabilistic Sharpe
    ratio against the Sharpe ratio the best of ``n_trials`` skill-less configurations would show,

    ``DSR = PSR(SR_0)``, ``SR_0 = E[max SR_n]`` of :func:`expected_max_sharpe` with mean 0.

    Parameters
    ----------
    returns : (T,) daily returns of the selected configuration, no NaN.
    n_trials : number of configurations tried (default: ``len(trial_sharpes)``).
    sr_variance : variance across trials of their annualised Sharpe ratios.
    trial_sharpes : the trials' annualised Sharpe ratios; gives ``sr_variance`` (ddof 1) and,
        if not given, ``n_trials``.
        With neither ``sr_variance`` nor ``trial_sharpes``, the variance of a Sharpe estimate
        under the null of no skill, ``252 / (T - 1)`` (annualised; Lo, 2002), is used: the trials
        are then assumed to differ by estimation noise only.

    Returns
    -------
    float in [0, 1]; equals :func:`probabilistic_sharpe_ratio` with benchmark 0 for one trial.

    Raises
    ------
    ValueError
        No ``n_trials`` and no ``trial_sharpes``, fewer than 2 trial Sharpe ratios, or NaN.
    """
    r = _clean(returns)
    if trial_sharpes is not None:
        ts = _clean(trial_sharpes, "trial_sharpes")
        if len(ts) < 2:
            raise ValueError(f"trial_sharpes needs at least 2 values, got {len(ts)}")
        if sr_variance is None:
            sr_variance = float(ts.var(ddof=1))
        if n_trials is None:
            n_trials = len(ts)
    if n_trials is None:
        raise ValueError("give n_trials (the number of configurations tried) or trial_sharpes")
    if sr_variance is None:
        sr_variance = TRADING_DAYS / (len(r) - 1)
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(n_trials, sr_variance))


def minimum_track_record_length(returns, sr_benchmark: float = 0.0, level: float = 0.95) -> float:
    """Minimum track record length (Bailey & Lopez de Prado, 2012, eq. 13): the number of daily
    observations needed for ``PSR(sr_benchmark) >= level`` given the observed Sharpe ratio,
    skewness and kurtosis,

    ``MinTRL = 1 + (1 - g3 SR + (g4 - 1) / 4 SR^2) (z_level / (SR - SR*))^2``

    (daily ``SR`` and ``SR* = sr_benchmark / sqrt(252)``). ``inf`` when ``SR <= SR*``: no length
    of this record can reject the benchmark. Divide by 252 for years.
    """
    from scipy import stats

    _check_level(level)
    sr, _, skew, kurt = _moments(_clean(returns))
    sr_star = sr_benchmark / math.sqrt(TRADING_DAYS)
    if sr <= sr_star:
        return float("inf")
    z = stats.norm.ppf(level)
    return float(1.0 + (1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2) * (z / (sr - sr_star)) ** 2)


def downside_deviation(returns, required_return: float = 0.0) -> float:
    """Annualised downside deviation ``sqrt(252 * mean(min(r - required_return, 0)^2))`` (the
    mean over all days), ``empyrical.downside_risk``."""
    import empyrical as ep

    return float(ep.downside_risk(_clean(returns), required_return=required_return, period="daily"))


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


def information_ratio(returns: pd.Series, benchmark: pd.Series) -> float:
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
    return float(active.mean() / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else float("nan")


def value_at_risk(returns, level: float = 0.95) -> float:
    """Historical one-day value at risk as a positive loss fraction: ``-percentile(r, 1 - level)``
    (linear interpolation between order statistics, ``empyrical.value_at_risk``)."""
    import empyrical as ep

    _check_level(level)
    return float(-ep.value_at_risk(_clean(returns), cutoff=1 - level))


def conditional_value_at_risk(returns, level: float = 0.95) -> float:
    """Historical one-day conditional value at risk (expected shortfall) as a positive loss
    fraction: minus the mean of the ``floor((T - 1)(1 - level)) + 1`` lowest returns
    (``empyrical.conditional_value_at_risk``)."""
    import empyrical as ep

    _check_level(level)
    return float(-ep.conditional_value_at_risk(_clean(returns), cutoff=1 - level))


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
    turnover : name -> daily turnover series (e.g. :func:`kit.backtest.turnover`).
    benchmark : returns Series, or the name of an entry of ``returns``, for the information ratio.
    n_trials : number of configurations tried, for the deflated Sharpe ratio.
    sr_variance : variance of the trials' annualised Sharpe ratios (see
        :func:`deflated_sharpe_ratio` for the default).
    bootstrap : add the stationary-bootstrap interval (about 0.1 s per strategy of 5,000 days
        with ``n_boot=1000``).
    n_boot, seed : of the bootstrap.
    level : of every interval, VaR, CVaR and the minimum track record length (default 0.95).

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
        sr, lo, hi = sharpe_ratio_ci(r, level)
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
            "downside_deviation": downside_deviation(r),
            "avg_profit_over_avg_loss": avg_profit_over_avg_loss(r),
            "hit_rate": hit_rate(r),
            "value_at_risk": value_at_risk(r, level),
            "conditional_value_at_risk": conditional_value_at_risk(r, level),
        }
        valid = len(r) >= 3 and r.std(ddof=1) > 0
        row["probabilistic_sharpe_ratio"] = probabilistic_sharpe_ratio(r) if valid else float("nan")
        row["min_track_record_length"] = minimum_track_record_length(r, 0.0, level) if valid else float("nan")
        if benchmark is not None:
            row["information_ratio"] = information_ratio(r, benchmark)
        if n_trials is not None:
            row["deflated_sharpe_ratio"] = deflated_sharpe_ratio(r, n_trials, sr_variance) if valid else float("nan")
        if bootstrap:
            _, blo, bhi = sharpe_ratio_bootstrap_ci(r, level, n_boot, seed=seed) if valid else (float("nan"),) * 3
            row["sharpe_boot_low"], row["sharpe_boot_high"] = blo, bhi
        if turnover is not None and name in turnover:
            row["turnover"] = float(turnover[name].mean())
        row.update(days=len(r), start=r.index[0].date().isoformat(), end=r.index[-1].date().isoformat())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
