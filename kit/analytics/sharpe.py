"""The Sharpe ratio and its uncertainty: the annualised ratio, the Mertens (2002) and stationary-
bootstrap (Politis & Romano, 1994) intervals, the probabilistic and deflated Sharpe ratios and the
minimum track record length (Bailey & Lopez de Prado, 2012, 2014), and the sample moments they share.

Conventions: ``returns`` are daily simple returns (decimal fractions); Sharpe ratios passed in or
returned are annualised (daily Sharpe times ``sqrt(252)``) unless a name says ``daily``; the risk
free rate is 0."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..conventions import TRADING_DAYS

__all__ = [
    "EULER_MASCHERONI",
    "Moments",
    "sample_moments",
    "sharpe_ratio",
    "sharpe_ratio_ci",
    "sharpe_ratio_bootstrap_ci",
    "sharpe_difference_bootstrap_ci",
    "probabilistic_sharpe_ratio",
    "expected_max_sharpe",
    "deflated_sharpe_ratio",
    "minimum_track_record_length",
]


class Moments(NamedTuple):
    """Sample moments of a return series: ``mean``, ``std`` (ddof 1), ``skew`` and ``kurtosis``
    (moment estimators, ``scipy.stats.skew`` / ``kurtosis(fisher=False)`` with ``bias=True``, as in
    Bailey & Lopez de Prado, 2012; a normal distribution has kurtosis 3), and ``n``."""

    mean: float
    std: float
    skew: float
    kurtosis: float
    n: int

    @property
    def excess_kurtosis(self) -> float:
        """``kurtosis - 3``."""
        return self.kurtosis - 3.0


def sample_moments(r: np.ndarray) -> Moments:
    """The :class:`Moments` of a 1-D float array without NaN (at least 2 values). A series with zero
    dispersion has skewness 0 and kurtosis 3 (the values of a normal), not NaN."""
    from scipy import stats

    n = len(r)
    mu = float(r.mean())
    sd = float(r.std(ddof=1)) if n > 1 else 0.0
    if sd == 0.0:
        return Moments(mu, 0.0, 0.0, 3.0, n)
    return Moments(mu, sd, float(stats.skew(r)), float(stats.kurtosis(r, fisher=False)), n)


def _daily_moments(r: np.ndarray) -> tuple[float, int, float, float]:
    """(daily Sharpe with the ddof-1 std, n, skewness, kurtosis) for the PSR family.

    Raises
    ------
    ValueError
        Fewer than 3 observations or zero dispersion.
    """
    n = len(r)
    sd = r.std(ddof=1) if n > 1 else 0.0
    if n < 3 or sd == 0:
        raise ValueError(f"returns: need at least 3 observations with non-zero dispersion (got n={n}, std={sd})")
    m = sample_moments(r)
    return m.mean / m.std, n, m.skew, m.kurtosis



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



def sharpe_ratio(returns, bars_per_year: float = TRADING_DAYS) -> float:
    """Annualised Sharpe ratio ``sqrt(bars_per_year) * mean(r) / std(r)`` (sample std, ddof 1;
    risk-free rate 0; ``bars_per_year`` 252 for daily returns), as ``empyrical.sharpe_ratio``. NaN
    for fewer than 2 observations or zero dispersion."""
    r = _clean(returns)
    if len(r) < 2:
        return float("nan")
    sd = r.std(ddof=1)
    return float(r.mean() / sd * math.sqrt(bars_per_year)) if sd > 0 else float("nan")



def sharpe_ratio_ci(returns: pd.Series, level: float = 0.95, bars_per_year: float = TRADING_DAYS) -> tuple[float, float, float]:
    """Annualised Sharpe ratio and its confidence interval.

    ``SE(SR_d) = sqrt((1 + SR_d^2 / 2 - skew * SR_d + (kurt - 3) / 4 * SR_d^2) / n)`` for the daily
    Sharpe ``SR_d`` (Mertens, 2002; Lo, 2002 when returns are normal); the interval
    ``(SR_d +- z * SE) * sqrt(bars_per_year)`` (252 for daily returns).

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
    m = sample_moments(r)
    skew, kurt = m.skew, m.kurtosis
    var = (1 + 0.5 * sr**2 - skew * sr + (kurt - 3) / 4 * sr**2) / n
    z = stats.norm.ppf(0.5 + level / 2)
    se = math.sqrt(max(var, 0.0))
    a = math.sqrt(bars_per_year)
    return sr * a, (sr - z * se) * a, (sr + z * se) * a



def _bootstrap_sharpes(r: np.ndarray, n_boot: int, mean_block: float, seed: int, bars_per_year: float = TRADING_DAYS) -> np.ndarray:
    """``(n_boot,)`` annualised Sharpe ratios of stationary-bootstrap resamples of ``r``."""
    from arch.bootstrap import StationaryBootstrap

    bs = StationaryBootstrap(mean_block, r, seed=np.random.default_rng(seed))
    idx = np.stack([bs.update_indices() for _ in range(n_boot)])  # (n_boot, n) resample indices
    x = r[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        return x.mean(axis=1) / x.std(axis=1, ddof=1) * math.sqrt(bars_per_year)



def sharpe_ratio_bootstrap_ci(
    returns, level: float = 0.95, n_boot: int = 1000, mean_block: float | None = None, seed: int = 0,
    bars_per_year: float = TRADING_DAYS,
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
    _daily_moments(r)  # validates length and dispersion
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if mean_block is None:
        from arch.bootstrap import optimal_block_length

        mean_block = max(1.0, float(optimal_block_length(r)["stationary"].iloc[0]))
    if not mean_block >= 1:
        raise ValueError(f"mean_block must be >= 1 day, got {mean_block}")
    boot = _bootstrap_sharpes(r, int(n_boot), float(mean_block), seed, bars_per_year)
    lo, hi = np.nanpercentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return sharpe_ratio(r, bars_per_year), float(lo), float(hi)



def sharpe_difference_bootstrap_ci(
    returns_a, returns_b, level: float = 0.95, n_boot: int = 1000, mean_block: float | None = None, seed: int = 0,
    bars_per_year: float = TRADING_DAYS,
) -> tuple[float, float, float]:
    """Difference of two strategies' annualised Sharpe ratios, ``SR(a) - SR(b)``, with a paired
    stationary-bootstrap percentile interval.

    Both series are resampled with the same indices (blocks of consecutive days, Politis & Romano,
    1994, through ``arch.bootstrap.StationaryBootstrap``), so what the two strategies share (the
    market's days) cancels in each resample's difference; this is the bootstrap test of Ledoit & Wolf
    (2008, "Robust performance hypothesis testing with the Sharpe ratio", J. Empirical Finance 15)
    in its percentile form. Each series alone resampled with the same seed and block length gives
    the resamples of :func:`sharpe_ratio_bootstrap_ci` (tested).

    Parameters
    ----------
    returns_a, returns_b : (T,) daily returns on the same dates, no NaN.
    level, n_boot, seed, bars_per_year : as :func:`sharpe_ratio_bootstrap_ci`.
    mean_block : mean block length in days; None: the larger of the two series' Politis & White
        (2004) estimates, at least 1.

    Returns
    -------
    (difference, low, high), annualised.

    Raises
    ------
    ValueError
        Series of different lengths, NaN returns, fewer than 3 observations, zero dispersion, or
        bad ``level``, ``n_boot``, ``mean_block``.
    """
    _check_level(level)
    a, b = _clean(returns_a, "returns_a"), _clean(returns_b, "returns_b")
    if a.shape != b.shape:
        raise ValueError(f"returns_a and returns_b must have the same length, got {len(a)} and {len(b)}")
    _daily_moments(a)
    _daily_moments(b)
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if mean_block is None:
        from arch.bootstrap import optimal_block_length

        mean_block = max(1.0, *(float(optimal_block_length(x)["stationary"].iloc[0]) for x in (a, b)))
    if not mean_block >= 1:
        raise ValueError(f"mean_block must be >= 1 day, got {mean_block}")
    diff = _bootstrap_sharpes(a, int(n_boot), float(mean_block), seed, bars_per_year) - _bootstrap_sharpes(b, int(n_boot), float(mean_block), seed, bars_per_year)
    lo, hi = np.nanpercentile(diff, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return sharpe_ratio(a, bars_per_year) - sharpe_ratio(b, bars_per_year), float(lo), float(hi)



def _psr(sr_d: float, sr_star_d: float, n: float, skew: float, kurt: float) -> float:
    from scipy import stats

    denom = 1.0 - skew * sr_d + (kurt - 1.0) / 4.0 * sr_d**2
    return float(stats.norm.cdf((sr_d - sr_star_d) * math.sqrt(n - 1.0) / math.sqrt(denom)))



def probabilistic_sharpe_ratio(returns, sr_benchmark: float = 0.0, bars_per_year: float = TRADING_DAYS) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & Lopez de Prado,
    2012, "The Sharpe Ratio Efficient Frontier", eq. 11).

    ``PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with the daily
    Sharpe ``SR`` (sample std, ddof 1), ``SR* = sr_benchmark / sqrt(bars_per_year)`` (252 for daily
    returns), ``n`` observations,
    skewness ``g3`` and kurtosis ``g4`` (3 for a normal) of the returns.

    Parameters
    ----------
    returns : (T,) daily returns, no NaN, at least 3.
    sr_benchmark : annualised benchmark Sharpe ratio (default 0).

    Returns
    -------
    float in [0, 1].
    """
    sr, n, skew, kurt = _daily_moments(_clean(returns))
    return _psr(sr, sr_benchmark / math.sqrt(bars_per_year), n, skew, kurt)



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
    returns, n_trials: int | None = None, sr_variance: float | None = None, trial_sharpes=None,
    bars_per_year: float = TRADING_DAYS,
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
        sr_variance = bars_per_year / (len(r) - 1)
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(n_trials, sr_variance), bars_per_year)



def minimum_track_record_length(returns, sr_benchmark: float = 0.0, level: float = 0.95,
                                bars_per_year: float = TRADING_DAYS) -> float:
    """Minimum track record length (Bailey & Lopez de Prado, 2012, eq. 13): the number of daily
    observations needed for ``PSR(sr_benchmark) >= level`` given the observed Sharpe ratio,
    skewness and kurtosis,

    ``MinTRL = 1 + (1 - g3 SR + (g4 - 1) / 4 SR^2) (z_level / (SR - SR*))^2``

    (daily ``SR`` and ``SR* = sr_benchmark / sqrt(252)``). ``inf`` when ``SR <= SR*``: no length
    of this record can reject the benchmark. Divide by 252 for years.
    """
    from scipy import stats

    _check_level(level)
    sr, _, skew, kurt = _daily_moments(_clean(returns))
    sr_star = sr_benchmark / math.sqrt(bars_per_year)
    if sr <= sr_star:
        return float("inf")
    z = stats.norm.ppf(level)
    return float(1.0 + (1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2) * (z / (sr - sr_star)) ** 2)

