"""Value at risk and conditional value at risk (expected shortfall), per asset and for a portfolio: one
implementation for the whole kit.

VaR and CVaR are reported as **positive loss fractions** of equity over one day at ``confidence``
(default 0.95): a VaR of 0.021 means a one-day loss of 2.1 % or more has probability 5 %. A negative
value means even the tail quantile is a gain. Methods: ``historical`` (empyrical's percentile
conventions), ``gaussian`` and ``cornish_fisher`` (modified VaR)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..portfolio.limits import PORTFOLIO, _as_weights
from .sharpe import sample_moments

__all__ = [
    "VAR_METHODS",
    "cornish_fisher_z",
    "value_at_risk",
    "conditional_value_at_risk",
    "expected_shortfall",
    "portfolio_returns",
    "portfolio_value_at_risk",
    "portfolio_conditional_value_at_risk",
    "var_table",
]



VAR_METHODS = ("historical", "gaussian", "cornish_fisher")



def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.5 <= c < 1.0:
        raise ValueError(f"confidence must lie in [0.5, 1), got {confidence!r}")
    return c



def _check_method(method: str) -> str:
    if method not in VAR_METHODS:
        raise ValueError(f"method must be one of {VAR_METHODS}, got {method!r}")
    return method



def _clean_returns(values, name: str, min_obs: int) -> np.ndarray:
    r = np.asarray(values, dtype="float64")
    if r.ndim != 1:
        raise ValueError(f"returns {name} must be one-dimensional (pass a DataFrame for per-asset values), got shape {r.shape}")
    if np.isinf(r).any():
        raise ValueError(f"returns {name} contain {int(np.isinf(r).sum())} infinite values")
    r = r[~np.isnan(r)]
    if len(r) < min_obs:
        raise ValueError(f"returns {name} have {len(r)} valid observations; need at least {min_obs}")
    return r



def cornish_fisher_z(p: float, skew: float = 0.0, excess_kurtosis: float = 0.0) -> float:
    """Cornish-Fisher quantile of a standardised distribution with given skewness and excess kurtosis.

    ``z_cf = z + (z^2 - 1) S / 6 + (z^3 - 3 z) K / 24 - (2 z^3 - 5 z) S^2 / 36`` with
    ``z = Phi^{-1}(p)`` (Zangari, 1996, RiskMetrics Monitor Q1; Favre & Galeano, 2002, J. Alternative
    Investments 5(2), "modified VaR"). Equal to ``z`` when ``S = K = 0``. The expansion is monotone in
    ``p`` only for moderate ``S``, ``K`` (Maillard, 2012, "A user's guide to the Cornish Fisher
    expansion"); outside that domain the quantile loses its meaning.

    Parameters
    ----------
    p : tail probability in (0, 1), e.g. 0.05 for 95 % confidence.
    skew, excess_kurtosis : ``S`` and ``K`` (kurtosis minus 3).

    Returns
    -------
    float, in standard deviations.
    """
    from scipy import stats

    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p!r}")
    z = float(stats.norm.ppf(p))
    s, k = float(skew), float(excess_kurtosis)
    return z + (z * z - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s * s / 36



def _var_1d(r: np.ndarray, c: float, method: str) -> float:
    from scipy import stats

    p = 1.0 - c
    if method == "historical":
        return -float(np.percentile(r, 100.0 * p))
    m = sample_moments(r)
    mu, sigma, s, k = m.mean, m.std, m.skew, m.excess_kurtosis
    z = float(stats.norm.ppf(p)) if method == "gaussian" else cornish_fisher_z(p, s, k)
    return -(mu + z * sigma)



def _cvar_1d(r: np.ndarray, c: float, method: str) -> float:
    from scipy import stats

    p = 1.0 - c
    if method == "historical":
        q = np.percentile(r, 100.0 * p)
        return -float(r[r <= q].mean())
    m = sample_moments(r)
    mu, sigma, s, k = m.mean, m.std, m.skew, m.excess_kurtosis
    z = float(stats.norm.ppf(p))
    phi = float(stats.norm.pdf(z))
    if method == "gaussian":
        tail_mean = -phi / p
    else:
        # E[z_cf(U) | U < p] in closed form, using int_{-inf}^{z} (x^2 - 1) phi = -z phi(z),
        # int (x^3 - 3x) phi = -(z^2 - 1) phi(z), int (2x^3 - 5x) phi = -(2 z^2 - 1) phi(z).
        tail_mean = -phi / p * (1 + s * z / 6 + k * (z * z - 1) / 24 - s * s * (2 * z * z - 1) / 36)
    return -(mu + sigma * tail_mean)



def _per_column(returns, confidence, method, fn, name: str):
    c = _check_confidence(confidence)
    _check_method(method)
    min_obs = 2 if method != "cornish_fisher" else 4
    if isinstance(returns, pd.DataFrame):
        out = {col: fn(_clean_returns(returns[col], f"column {col!r}", min_obs), c, method) for col in returns.columns}
        return pd.Series(out, name=name, dtype="float64")
    return fn(_clean_returns(returns, "", min_obs), c, method)



def value_at_risk(returns: pd.Series | pd.DataFrame | np.ndarray, confidence: float = 0.95, method: str = "historical"):
    """One-day value at risk as a positive loss fraction, per asset.

    ``historical``: ``VaR = -q_{1-c}(r)``, the empirical ``(1 - c)`` quantile with linear interpolation
    between order statistics (``np.percentile``; the convention of empyrical's ``value_at_risk``).
    ``gaussian``: ``VaR = -(mu + z_{1-c} sigma)`` with the sample mean and standard deviation (ddof 1)
    and the standard normal quantile ``z_{1-c}`` (-1.645 at 95 %).
    ``cornish_fisher``: the Gaussian formula with ``z`` replaced by :func:`cornish_fisher_z` using the
    sample skewness and excess kurtosis (Zangari, 1996; Favre & Galeano, 2002).

    Parameters
    ----------
    returns : (T,) Series/array of daily simple returns, or (T, N) DataFrame (one VaR per column).
        NaN values are dropped (per column); infinite values raise.
    confidence : in [0.5, 1), default 0.95.
    method : "historical", "gaussian" or "cornish_fisher".

    Returns
    -------
    float for one series; (N,) float64 Series named ``value_at_risk`` for a DataFrame.

    Raises
    ------
    ValueError
        Bad ``confidence`` or ``method``, infinite returns, or fewer than 2 valid observations
        (4 for Cornish-Fisher) in a series; the message names the column.
    """
    return _per_column(returns, confidence, method, _var_1d, "value_at_risk")



def conditional_value_at_risk(returns: pd.Series | pd.DataFrame | np.ndarray, confidence: float = 0.95, method: str = "historical"):
    """One-day conditional value at risk (expected shortfall) as a positive loss fraction, per asset.

    ``historical``: ``CVaR = -mean(r | r <= q_{1-c})`` with the historical quantile of
    :func:`value_at_risk` (empyrical's ``conditional_value_at_risk`` convention); always ``>= VaR``.
    ``gaussian``: ``CVaR = -(mu - sigma phi(z_{1-c}) / (1 - c))``.
    ``cornish_fisher``: the tail average of the Cornish-Fisher quantile function,
    ``CVaR = -(mu + sigma E[z_cf(U) | U < p])`` with ``p = 1 - c`` and, integrating term by term,
    ``E[z_cf | U < p] = -phi(z)/p * (1 + S z / 6 + K (z^2 - 1) / 24 - S^2 (2 z^2 - 1) / 36)``,
    ``z = z_p``. It equals the Gaussian value when ``S = K = 0`` and is ``>= VaR`` wherever the
    expansion is monotone. (Boudt, Peterson & Croux, 2008, "modified ES" uses an Edgeworth density
    instead and differs at second order.)

    Parameters and errors as :func:`value_at_risk`; a DataFrame gives a Series named
    ``conditional_value_at_risk``.
    """
    return _per_column(returns, confidence, method, _cvar_1d, "conditional_value_at_risk")



expected_shortfall = conditional_value_at_risk






def portfolio_returns(weights: pd.Series, returns: pd.DataFrame) -> pd.Series:
    """Historical simulation of today's portfolio: ``r_p,t = sum_i w_i r_{t,i}`` with fixed weights.

    Only held symbols (``w_i != 0``) enter; a date where any held symbol's return is NaN is dropped (a
    historical scenario needs every held asset's return).

    Parameters
    ----------
    weights : (N,) Series of weights (fractions of equity) indexed by symbol; NaN raises.
    returns : (T, N') DataFrame of daily simple asset returns.

    Returns
    -------
    (T',) float64 Series named ``portfolio_return``, T' <= T.

    Raises
    ------
    ValueError
        A weight is not finite, or a held symbol is not a column of ``returns``.
    """
    w = _as_weights(weights)
    if not np.isfinite(w.to_numpy()).all():
        raise ValueError(f"weights must be finite; bad symbols: {list(w.index[~np.isfinite(w.to_numpy())])}")
    held = w[w != 0]
    missing = [s for s in held.index if s not in returns.columns]
    if missing:
        raise ValueError(f"held symbols missing from returns columns: {missing}")
    r = returns[list(held.index)].astype("float64").dropna(how="any")
    return pd.Series(r.to_numpy() @ held.to_numpy(), index=r.index, name="portfolio_return")



def portfolio_value_at_risk(weights: pd.Series, returns: pd.DataFrame, confidence: float = 0.95, method: str = "historical") -> float:
    """One-day VaR of today's portfolio by historical simulation of its returns.

    ``value_at_risk(portfolio_returns(weights, returns), confidence, method)``: the fixed weights
    applied to every past day's asset returns, then any of :data:`VAR_METHODS` on that series.

    Parameters
    ----------
    weights : (N,) Series of current weights (fractions of equity).
    returns : (T, N') DataFrame of daily simple asset returns.
    confidence, method : as :func:`value_at_risk`.

    Returns
    -------
    float, a positive loss fraction of equity.

    Raises
    ------
    ValueError
        As :func:`portfolio_returns` and :func:`value_at_risk`.
    """
    return float(value_at_risk(portfolio_returns(weights, returns), confidence, method))



def portfolio_conditional_value_at_risk(weights: pd.Series, returns: pd.DataFrame, confidence: float = 0.95, method: str = "historical") -> float:
    """One-day CVaR (expected shortfall) of today's portfolio by historical simulation.

    ``conditional_value_at_risk(portfolio_returns(weights, returns), confidence, method)``.
    Parameters, return (a positive loss fraction) and errors as :func:`portfolio_value_at_risk`.
    """
    return float(conditional_value_at_risk(portfolio_returns(weights, returns), confidence, method))



def var_table(returns: pd.DataFrame, weights: pd.Series | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """VaR and CVaR by every method, one row per asset plus a ``PORTFOLIO`` row when ``weights`` are
    given. Columns ``<method>_var`` and ``<method>_cvar`` (positive loss fractions, one day).

    Parameters
    ----------
    returns : (T, N) DataFrame of daily simple returns.
    weights : optional (N,) Series of current weights for the portfolio row.
    confidence : in [0.5, 1), default 0.95.

    Raises
    ------
    ValueError
        As :func:`value_at_risk` and :func:`portfolio_returns`.
    """
    cols = {}
    for m in VAR_METHODS:
        cols[f"{m}_var"] = value_at_risk(returns, confidence, m)
        cols[f"{m}_cvar"] = conditional_value_at_risk(returns, confidence, m)
    table = pd.DataFrame(cols)
    if weights is not None:
        rp = portfolio_returns(weights, returns)
        row = {}
        for m in VAR_METHODS:
            row[f"{m}_var"] = float(value_at_risk(rp, confidence, m))
            row[f"{m}_cvar"] = float(conditional_value_at_risk(rp, confidence, m))
        table.loc[PORTFOLIO] = pd.Series(row)
    return table

