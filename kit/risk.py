"""Risk tools: VaR and CVaR, position and exposure limits, drawdown control, ATR stops, rolling
correlation, stress tests, portfolio optimisation and the pre-trade check.

Conventions
-----------
* Returns are daily simple decimal returns; weights are fractions of equity, ``(T, N)`` DataFrames
  (dates x symbols) or ``(N,)`` Series for one day; positive = long. Gross exposure is
  ``sum_i |w_i|``, net exposure ``sum_i w_i``; since weights are fractions of equity, leverage
  (gross exposure / equity) is the gross sum too. :class:`Limits` keeps ``max_gross`` (the desk's
  risk budget) and ``max_leverage`` (the broker's or regulator's cap, e.g. 2.0 under Reg T) as two
  fields so that a report names whichever binds; the binding cap is the smaller of the two.
* Value at risk and conditional value at risk (expected shortfall) are reported as **positive loss
  fractions** of equity over one day at ``confidence`` (default 0.95): a VaR of 0.021 means a
  one-day loss of 2.1 % or more has probability 5 %. A negative value means even the tail quantile
  is a gain.
* Timing follows :mod:`kit.backtest`: a weight or position in row t is decided at the close of t
  from data up to t and earns ``r_{t+1}``. Every overlay here uses data up to the decision time only.

Portfolio optimisation library: skfolio
---------------------------------------
:func:`optimise_weights` wraps **skfolio** (1.12.2, BSD-3, built on cvxpy and scikit-learn): the four
methods the project needs (max-Sharpe and minimum-variance mean-variance, risk parity, Black-Litterman)
share one estimator API with per-name weight bounds, a budget (net exposure) and long/short exposure
caps, which is exactly what :class:`Limits` expresses. It installs small (cvxpy-base, clarabel) next to
the pinned numpy/pandas/scipy, and is actively released. PyPortfolioOpt (1.6.0) was the other
candidate: it fixes the budget at 1 (or 0), has no equal-risk-contribution optimiser (only HRP), and
pulls four extra solvers; riskfolio-lib brings a far larger dependency tree for the same methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
from numba import njit

__all__ = [
    "VAR_METHODS",
    "OPTIMISATION_METHODS",
    "DEFAULT_STRESS_WINDOWS",
    "cornish_fisher_z",
    "value_at_risk",
    "conditional_value_at_risk",
    "expected_shortfall",
    "portfolio_returns",
    "portfolio_value_at_risk",
    "portfolio_conditional_value_at_risk",
    "var_table",
    "Limits",
    "apply_limits",
    "drawdown_control",
    "atr_stop_overlay",
    "rolling_average_correlation",
    "stress_test",
    "overlay_strategies",
    "OptimisationError",
    "optimise_weights",
    "PreTradeResult",
    "pre_trade_check",
]

VAR_METHODS = ("historical", "gaussian", "cornish_fisher")
OPTIMISATION_METHODS = ("max_sharpe", "min_variance", "risk_parity", "black_litterman")
DEFAULT_STRESS_WINDOWS: dict[str, tuple[str, str]] = {
    "GFC autumn 2008": ("2008-09-01", "2008-11-30"),
    "COVID March 2020": ("2020-02-19", "2020-03-23"),
}
PORTFOLIO = "PORTFOLIO"  # the symbol of portfolio-level rows in a violations table
_TOL = 1e-9
_NOISE = 1e-12  # relative excess over a limit that the pre-trade check treats as rounding, not a breach


# ---------------------------------------------------------------------------------------------
# Value at risk and conditional value at risk
# ---------------------------------------------------------------------------------------------


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


def _moments(r: np.ndarray) -> tuple[float, float, float, float]:
    """Sample mean, standard deviation (ddof 1), skewness and excess kurtosis (moment estimators,
    ``scipy.stats.skew`` / ``kurtosis`` with ``bias=True``, as in :mod:`kit.metrics`)."""
    from scipy import stats

    mu = float(r.mean())
    sigma = float(r.std(ddof=1))
    if sigma == 0.0:
        return mu, 0.0, 0.0, 0.0
    return mu, sigma, float(stats.skew(r)), float(stats.kurtosis(r, fisher=True))


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
    mu, sigma, s, k = _moments(r)
    z = float(stats.norm.ppf(p)) if method == "gaussian" else cornish_fisher_z(p, s, k)
    return -(mu + z * sigma)


def _cvar_1d(r: np.ndarray, c: float, method: str) -> float:
    from scipy import stats

    p = 1.0 - c
    if method == "historical":
        q = np.percentile(r, 100.0 * p)
        return -float(r[r <= q].mean())
    mu, sigma, s, k = _moments(r)
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


def _as_weights(weights, name: str = "weights") -> pd.Series:
    if isinstance(weights, Mapping):
        weights = pd.Series(dict(weights), dtype="float64")
    if not isinstance(weights, pd.Series):
        raise TypeError(f"{name} must be a Series (or dict) indexed by symbol, got {type(weights).__name__}")
    w = weights.astype("float64")
    if not w.index.is_unique:
        raise ValueError(f"{name} has duplicate symbols: {list(w.index[w.index.duplicated()])}")
    return w


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


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Position and exposure limits, as fractions of equity.

    Attributes
    ----------
    max_position : largest ``|w_i|`` per name (default 0.02, 2 % of capital); > 0.
    max_gross : largest gross exposure ``sum |w_i|`` (default 1.0); > 0.
    max_net : largest ``|sum w_i|`` (default 1.0); >= 0 (0 = market neutral).
    max_leverage : largest gross exposure / equity from the broker or regulator (default 2.0, Reg T);
        > 0. Binding gross cap = ``min(max_gross, max_leverage)``.
    allow_short : whether negative weights are allowed (default True).
    min_price : names priced below it get weight 0 in :func:`pre_trade_check` (default 0, off); >= 0.
    max_turnover : largest one-way turnover ``sum |w_t - w_{t-1}|`` per rebalance, or None (off); >= 0.

    ``math.inf`` means no limit. Negative, NaN or zero (where > 0 is required) values raise
    ``ValueError`` naming the field.
    """

    max_position: float = 0.02
    max_gross: float = 1.0
    max_net: float = 1.0
    max_leverage: float = 2.0
    allow_short: bool = True
    min_price: float = 0.0
    max_turnover: float | None = None

    def __post_init__(self):
        positive = ("max_position", "max_gross", "max_leverage")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "allow_short":
                if not isinstance(v, bool | np.bool_):
                    raise ValueError(f"Limits.allow_short must be a bool, got {v!r}")
                continue
            if v is None and f.name == "max_turnover":
                continue
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise ValueError(f"Limits.{f.name} must be a number, got {v!r}")
            v = float(v)
            if math.isnan(v) or v < 0 or (f.name in positive and v == 0):
                need = "> 0" if f.name in positive else ">= 0"
                raise ValueError(f"Limits.{f.name} must be {need} and not NaN, got {v!r}")
            object.__setattr__(self, f.name, v)

    @property
    def gross_cap(self) -> float:
        """The binding gross exposure cap, ``min(max_gross, max_leverage)``."""
        return min(self.max_gross, self.max_leverage)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Limits:
        """Limits from a mapping (a params YAML section); missing keys take the defaults.

        Raises
        ------
        ValueError
            An unknown key (named), or a bad value (see the class).
        """
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown Limits keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict of the fields (for run records)."""
        return asdict(self)


def _clip_names(w: np.ndarray, limits: Limits, free: np.ndarray) -> np.ndarray:
    out = w if limits.allow_short else np.where(free & (w < 0), 0.0, w)
    return np.where(free, np.clip(out, -limits.max_position, limits.max_position), out)


def _gross_factor(w: np.ndarray, cap: float, free: np.ndarray) -> np.ndarray:
    """Factor (one per row) for the free names so that the gross exposure is at most ``cap``."""
    a = np.abs(w)
    g_free = np.where(free, a, 0.0).sum(axis=-1, keepdims=True)
    g_fixed = np.where(free, 0.0, a).sum(axis=-1, keepdims=True)
    over = g_free + g_fixed > cap
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(over & (g_free > 0), np.clip((cap - g_fixed) / g_free, 0.0, 1.0), 1.0)
    return f


def _net_factors(w: np.ndarray, cap: float, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors for the free longs and free shorts (one each per row) so that ``|net| <= cap``:
    the side in excess is scaled down, the other side is left alone."""
    net = w.sum(axis=-1, keepdims=True)
    lf = np.where(free & (w > 0), w, 0.0).sum(axis=-1, keepdims=True)
    sf = np.where(free & (w < 0), -w, 0.0).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        fl = np.where((net > cap) & (lf > 0), np.clip((lf - (net - cap)) / lf, 0.0, 1.0), 1.0)
        fs = np.where((net < -cap) & (sf > 0), np.clip((sf - (-net - cap)) / sf, 0.0, 1.0), 1.0)
    return fl, fs


def _limit_rows(w: np.ndarray, limits: Limits, free: np.ndarray | None = None) -> np.ndarray:
    """Per-name clip, gross scale, net side scale on rows of ``w`` (the last axis is symbols)."""
    if free is None:
        free = np.ones(w.shape, dtype=bool)
    w = _clip_names(w, limits, free)
    w = np.where(free, w * _gross_factor(w, limits.gross_cap, free), w)
    fl, fs = _net_factors(w, limits.max_net, free)
    return np.where(free & (w > 0), w * fl, np.where(free & (w < 0), w * fs, w))


def _within_limits(w: np.ndarray, limits: Limits, tol: float = _TOL) -> bool:
    return bool(
        (np.abs(w) <= limits.max_position * (1 + tol) + tol).all()
        and (limits.allow_short or (w >= -tol).all())
        and np.abs(w).sum() <= limits.gross_cap * (1 + tol) + tol
        and abs(w.sum()) <= limits.max_net * (1 + tol) + tol
    )


def _blend_turnover(w: np.ndarray, prev: np.ndarray, cap: float) -> tuple[np.ndarray, float]:
    d = float(np.abs(w - prev).sum())
    if d <= cap:
        return w, 1.0
    lam = cap / d
    return prev + lam * (w - prev), lam


def apply_limits(weights: pd.Series | pd.DataFrame, limits: Limits, previous: pd.Series | None = None):
    """Clip and scale weights so that every row satisfies ``limits``; deterministic.

    Order, per row:

    1. NaN -> 0 (not held); with ``allow_short=False`` negative weights -> 0;
    2. per-name clip to ``[-max_position, max_position]``;
    3. gross: when ``sum |w| > min(max_gross, max_leverage)``, all weights are scaled by the same
       factor so the gross equals the cap;
    4. net: when ``sum w > max_net`` the longs are scaled down by the factor that brings the net to
       ``max_net`` (the shorts when ``sum w < -max_net``); this only lowers sizes, so 2 and 3 still hold;
    5. turnover (when ``max_turnover`` is set): the row moves from the previous accepted row (the
       ``previous`` Series for the first row, default all 0) toward its limited target by the fraction
       ``max_turnover / sum |w - w_prev|``. A convex combination of two rows within limits is within
       limits; if ``previous`` itself breaks them, steps 2-4 are applied again and the risk limits win
       over the turnover cap.

    Parameters
    ----------
    weights : (N,) Series or (T, N) DataFrame of target weights (fractions of equity).
    limits : :class:`Limits`.
    previous : optional (N,) Series, the weights held before the first row (for the turnover step).

    Returns
    -------
    Same type and labels as ``weights``, float64, no NaN.

    Raises
    ------
    ValueError
        An infinite weight (the message names the symbol and date).
    """
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    single = isinstance(weights, pd.Series)
    frame = weights.to_frame().T if single else weights
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"weights must be a Series or DataFrame, got {type(weights).__name__}")
    w = frame.to_numpy(dtype="float64", copy=True)
    bad = np.isinf(w)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ValueError(f"weights contain {int(bad.sum())} infinite values, first at ({frame.index[t]!r}, {frame.columns[j]!r})")
    w = _limit_rows(np.nan_to_num(w, nan=0.0), limits)
    if limits.max_turnover is not None:
        prev = np.zeros(w.shape[1])
        if previous is not None:
            prev = _as_weights(previous, "previous").reindex(frame.columns).fillna(0.0).to_numpy()
        for t in range(w.shape[0]):
            row, lam = _blend_turnover(w[t], prev, limits.max_turnover)
            if lam < 1.0 and not _within_limits(row, limits):
                row = _limit_rows(row, limits)
            w[t] = row
            prev = row
    if single:
        return pd.Series(w[0], index=weights.index, name=weights.name)
    return pd.DataFrame(w, index=frame.index, columns=frame.columns)


# ---------------------------------------------------------------------------------------------
# Drawdown control
# ---------------------------------------------------------------------------------------------


def drawdown_control(
    returns: pd.Series,
    threshold: float = 0.10,
    floor: float = 0.25,
    full_drawdown: float | None = None,
    feedback: bool = True,
    align: str = "returns",
) -> pd.Series:
    """Exposure multiplier in ``[floor, 1]`` that cuts exposure in a drawdown and restores it on recovery.

    Rule: with drawdown ``dd = 1 - equity / running peak`` (>= 0),
    ``m(dd) = 1 - (1 - floor) * clip((dd - threshold) / (full_drawdown - threshold), 0, 1)``:
    full exposure up to ``threshold``, falling linearly to ``floor`` at ``full_drawdown`` (default
    ``2 * threshold``), and rising again along the same line as the drawdown shrinks (no memory, no
    hysteresis). The multiplier for day t uses the drawdown at the close of t-1, i.e. returns up to
    t-1 only; day 0 gets 1.

    With ``feedback=True`` (default) the drawdown is that of the controlled equity,
    ``prod (1 + m_s r_s)``: the account's own drawdown, computed day by day. With ``feedback=False``
    it is the drawdown of the uncontrolled returns (a signal-level rule).

    Parameters
    ----------
    returns : (T,) Series of the strategy's daily simple returns at full exposure; NaN or inf raise.
    threshold : drawdown (fraction, > 0) where cutting starts.
    floor : smallest multiplier, in [0, 1].
    full_drawdown : drawdown where the floor is reached, in (threshold, 1]; default ``2 * threshold``.
    feedback : see above.
    align : ``"returns"`` (default): ``m[t]`` multiplies the return of day t, so the controlled
        returns are ``m * returns``. ``"weights"``: ``m[t]`` is decided at the close of t (from
        returns up to t) and multiplies the weights row t of the kit's convention (row t earns
        ``r_{t+1}``); it equals the ``"returns"`` series shifted back by one day.

    Returns
    -------
    (T,) float64 Series named ``exposure_multiplier``, values in ``[floor, 1]``.

    Raises
    ------
    ValueError
        Bad parameters or non-finite returns (named).
    """
    r = pd.Series(returns).astype("float64")
    if not np.isfinite(r.to_numpy()).all():
        raise ValueError(f"returns must be finite; {int((~np.isfinite(r.to_numpy())).sum())} NaN/inf values")
    full = 2.0 * threshold if full_drawdown is None else float(full_drawdown)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    if not threshold < full <= 1.0:
        raise ValueError(f"full_drawdown must lie in (threshold, 1], got {full!r} with threshold {threshold!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must lie in [0, 1], got {floor!r}")
    if align not in ("returns", "weights"):
        raise ValueError(f"align must be 'returns' or 'weights', got {align!r}")

    def mult(dd):
        return 1.0 - (1.0 - floor) * np.clip((dd - threshold) / (full - threshold), 0.0, 1.0)

    x = r.to_numpy()
    T = len(x)
    decided = np.empty(T)  # decided[t]: multiplier decided at the close of t (data up to t)
    if feedback:
        eq = peak = 1.0
        m_prev = 1.0
        for t in range(T):
            eq *= 1.0 + m_prev * x[t]
            peak = max(peak, eq)
            m_prev = float(mult(1.0 - eq / peak))
            decided[t] = m_prev
    else:
        eq = np.cumprod(1.0 + x)
        decided = mult(1.0 - eq / np.maximum.accumulate(np.maximum(eq, 1.0)))
    if align == "weights":
        out = decided
    else:
        out = np.concatenate([[1.0], decided[:-1]])[:T]
    return pd.Series(out, index=r.index, name="exposure_multiplier")


# ---------------------------------------------------------------------------------------------
# ATR stop-loss and take-profit overlay
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _atr_stop_nb(pos, close, atr, stop_atr, tp_ratio):
    T, N = pos.shape
    out = pos.copy()
    code = np.zeros((T, N), dtype=np.int8)
    entry_row = np.full((T, N), -1, dtype=np.int64)
    for j in range(N):
        prev_sign = 0
        stopped = False
        stop = np.nan
        tp = np.nan
        e_row = -1
        for t in range(T):
            p = pos[t, j]
            s = 0
            if not np.isnan(p):
                if p > 0:
                    s = 1
                elif p < 0:
                    s = -1
            if s != prev_sign:
                # a new trade (or flat): entry at today's close, stop levels fixed from today's ATR
                stopped = False
                stop = np.nan
                tp = np.nan
                if s != 0:
                    e_row = t
                    c0 = close[t, j]
                    a = atr[t, j]
                    if np.isfinite(c0) and np.isfinite(a) and a > 0:
                        d = stop_atr * a
                        stop = c0 - s * d
                        tp = c0 + s * tp_ratio * d
                prev_sign = s
                continue
            if s == 0:
                continue
            if stopped:
                out[t, j] = 0.0
                continue
            c = close[t, j]
            if np.isnan(c) or np.isnan(stop):
                continue
            hit_stop = c <= stop if s > 0 else c >= stop
            hit_tp = c >= tp if s > 0 else c <= tp
            if hit_stop or hit_tp:
                stopped = True
                out[t, j] = 0.0
                code[t, j] = 1 if hit_stop else 2
                entry_row[t, j] = e_row
    return out, code, entry_row


def atr_stop_overlay(
    positions: pd.DataFrame,
    high: pd.DataFrame,
    low: pd.DataFrame,
    close: pd.DataFrame,
    atr_window: int = 14,
    stop_atr: float = 2.0,
    take_profit_ratio: float = 1.5,
    return_events: bool = False,
):
    """ATR stop-loss and take-profit applied to a positions frame, as a backtest overlay.

    A *trade* starts on a row where the sign of the position changes (from flat/NaN or the other
    side) and lasts while the sign stays the same (size changes within a side are the same trade).
    At entry (row t0): entry price ``E = close_{t0}``, stop distance ``d = stop_atr * ATR_{t0}``
    (Wilder ATR over ``atr_window`` days from :func:`kit.kernels.atr_wilder`, data up to t0),
    stop ``E - d`` and take-profit ``E + take_profit_ratio * d`` for a long (mirrored for a short):
    2 x ATR and 1.5 x the stop distance as in seed 004. On each later row t the close is compared
    with both levels (closes, not intraday highs/lows: with daily bars the fill price of an intraday
    touch is unknown, and the kit's backtests fill at the close). A hit at the close of t flattens
    row t (the order fills at that close, as in :func:`kit.backtest.simulate`): returns up to
    ``r_t`` are unchanged, the first one affected is ``r_{t+1}``; nothing at row t uses data after t.
    The position stays 0 until the signal's sign changes (to the other side or through 0/NaN), which
    starts a new trade. A trade whose entry ATR is NaN (too little history) or whose entry close is
    NaN has no stop; a NaN close on a later day skips that day's check.

    Parameters
    ----------
    positions : (T, N) DataFrame of positions or weights (NaN = not live, kept NaN).
    high, low, close : (T, N) DataFrames of split-adjusted prices with the same labels.
    atr_window : Wilder ATR window (default 14).
    stop_atr : stop distance in ATRs (default 2.0), > 0.
    take_profit_ratio : take-profit distance / stop distance (default 1.5), > 0.
    return_events : also return a DataFrame of exits with columns ``symbol, entry_date,
        entry_price, exit_date, exit_price, reason`` ("stop" or "take_profit"), ``stop``,
        ``take_profit``.

    Returns
    -------
    (T, N) float64 DataFrame of positions, or ``(positions, events)``.

    Raises
    ------
    ValueError
        Labels of the four frames differ, or a parameter is not positive.
    """
    from . import kernels

    for name, f in (("high", high), ("low", low), ("close", close)):
        if not (f.index.equals(positions.index) and f.columns.equals(positions.columns)):
            raise ValueError(f"{name} must have the same index and columns as positions")
    if not stop_atr > 0:
        raise ValueError(f"stop_atr must be > 0, got {stop_atr!r}")
    if not take_profit_ratio > 0:
        raise ValueError(f"take_profit_ratio must be > 0, got {take_profit_ratio!r}")
    c = close.to_numpy(dtype="float64")
    atr = kernels.atr_wilder(high.to_numpy(dtype="float64"), low.to_numpy(dtype="float64"), c, atr_window)
    out, code, entry_row = _atr_stop_nb(positions.to_numpy(dtype="float64"), c, atr, float(stop_atr), float(take_profit_ratio))
    result = pd.DataFrame(out, index=positions.index, columns=positions.columns)
    if not return_events:
        return result
    rows = []
    for t, j in zip(*np.nonzero(code), strict=True):
        t0 = entry_row[t, j]
        s = 1.0 if positions.iat[t0, j] > 0 else -1.0
        d = stop_atr * atr[t0, j]
        rows.append(
            {
                "symbol": positions.columns[j],
                "entry_date": positions.index[t0],
                "entry_price": c[t0, j],
                "exit_date": positions.index[t],
                "exit_price": c[t, j],
                "reason": "stop" if code[t, j] == 1 else "take_profit",
                "stop": c[t0, j] - s * d,
                "take_profit": c[t0, j] + s * take_profit_ratio * d,
            }
        )
    cols = ["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "reason", "stop", "take_profit"]
    events = pd.DataFrame(rows, columns=cols).sort_values(["exit_date", "symbol"], ignore_index=True)
    return result, events


# ---------------------------------------------------------------------------------------------
# Rolling average correlation
# ---------------------------------------------------------------------------------------------


def rolling_average_correlation(returns: pd.DataFrame, window: int = 63) -> pd.Series:
    """Mean off-diagonal pairwise Pearson correlation over a rolling window.

    At each date t, the live assets are those with a return on every one of the last ``window``
    rows and a non-zero variance there. With ``z`` the window's returns demeaned and scaled to unit
    norm per asset, ``rho_ij = sum_t z_ti z_tj``, so
    ``sum_{i,j} rho_ij = sum_t (sum_i z_ti)^2`` and the average over the ``n (n - 1)`` off-diagonal
    pairs is ``(sum_t (sum_i z_ti)^2 - n) / (n (n - 1))``: O(window x N) per date instead of a full
    correlation matrix. Equal to the mean of the off-diagonal entries of
    ``returns.rolling(window).corr()`` on complete windows (tested).

    Parameters
    ----------
    returns : (T, N) DataFrame of daily returns (NaN = not live).
    window : rows per window (default 63, a quarter), >= 2.

    Returns
    -------
    (T,) float64 Series named ``average_correlation``; NaN before the first full window and where
    fewer than 2 assets are live.

    Raises
    ------
    ValueError
        ``window < 2`` or infinite returns.
    """
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    window = int(window)
    x = returns.to_numpy(dtype="float64")
    if np.isinf(x).any():
        raise ValueError(f"returns contain {int(np.isinf(x).sum())} infinite values")
    T = x.shape[0]
    out = np.full(T, np.nan)
    valid = (~np.isnan(x)).astype(np.int64)
    csum = np.vstack([np.zeros((1, x.shape[1]), dtype=np.int64), np.cumsum(valid, axis=0)])
    for t in range(window - 1, T):
        live = (csum[t + 1] - csum[t + 1 - window]) == window
        if live.sum() < 2:
            continue
        b = x[t + 1 - window : t + 1, live]
        b = b - b.mean(axis=0)
        norm = np.sqrt((b * b).sum(axis=0))
        ok = norm > 1e-14 * np.maximum(np.abs(x[t + 1 - window : t + 1, live]).max(axis=0), 1e-300)
        n = int(ok.sum())
        if n < 2:
            continue
        z = b[:, ok] / norm[ok]
        total = float((z.sum(axis=1) ** 2).sum())
        out[t] = (total - n) / (n * (n - 1))
    return pd.Series(out, index=returns.index, name="average_correlation")


# ---------------------------------------------------------------------------------------------
# Stress tests
# ---------------------------------------------------------------------------------------------


def _window_stats(rp: pd.Series) -> dict:
    if len(rp) == 0:
        return {"cumulative_return": np.nan, "worst_day": np.nan, "worst_day_date": pd.NaT, "max_drawdown": np.nan}
    eq = (1.0 + rp).cumprod()
    dd = eq / np.maximum(eq.cummax(), 1.0) - 1.0
    return {
        "cumulative_return": float(eq.iloc[-1] - 1.0),
        "worst_day": float(rp.min()),
        "worst_day_date": rp.idxmin(),
        "max_drawdown": float(dd.min()),
    }


def stress_test(
    weights: pd.Series,
    returns: pd.DataFrame,
    windows: Mapping[str, tuple] | None = None,
    worst_k: int = 0,
    worst_window: int = 21,
) -> pd.DataFrame:
    """Replay historical stress windows on today's weights.

    Each scenario applies the fixed weights (rebalanced daily) to the asset returns of the window:
    ``r_p,t = sum_i w_i r_{t,i}``. A held symbol without a return on a day (not yet listed, halted,
    not in ``returns``) contributes 0 that day: it is **zeroed and counted**, listed in
    ``missing_symbols`` with its gross weight in ``missing_weight`` and the number of zeroed
    (symbol, day) cells in ``missing_obs``, so a reader can judge how much of the book the scenario
    covers. A window with no rows in ``returns`` gives ``days = 0`` and NaN statistics.

    ``worst_k > 0`` adds the k worst non-overlapping ``worst_window``-day periods of today's
    portfolio over the whole sample (greedy by compounded return), named ``worst 21d #1`` etc.

    Parameters
    ----------
    weights : (N,) Series of current weights (fractions of equity); NaN/inf raise.
    returns : (T, N') DataFrame of daily simple returns with a sorted DatetimeIndex.
    windows : mapping name -> (start, end) inclusive dates; default :data:`DEFAULT_STRESS_WINDOWS`
        (autumn 2008: 2008-09-01..2008-11-30, COVID crash: 2020-02-19..2020-03-23).
    worst_k : number of worst rolling windows to add (default 0).
    worst_window : their length in trading days (default 21).

    Returns
    -------
    DataFrame indexed by scenario with columns ``start, end, days, cumulative_return, worst_day,
    worst_day_date, max_drawdown`` (negative fraction, from the window's start), ``missing_symbols``
    (comma-separated), ``missing_weight``, ``missing_obs``.

    Raises
    ------
    ValueError
        Non-finite weights, an unsorted or non-datetime index, infinite returns, a window with
        start after end, or bad ``worst_k`` / ``worst_window``.
    """
    w = _as_weights(weights)
    if not np.isfinite(w.to_numpy()).all():
        raise ValueError(f"weights must be finite; bad symbols: {list(w.index[~np.isfinite(w.to_numpy())])}")
    if not isinstance(returns.index, pd.DatetimeIndex) or not returns.index.is_monotonic_increasing:
        raise ValueError("returns must have a sorted DatetimeIndex")
    held = w[w != 0]
    r = returns.reindex(columns=held.index).astype("float64")
    if np.isinf(r.to_numpy()).any():
        raise ValueError("returns contain infinite values for held symbols")
    windows = DEFAULT_STRESS_WINDOWS if windows is None else windows
    if int(worst_k) != worst_k or worst_k < 0:
        raise ValueError(f"worst_k must be an integer >= 0, got {worst_k!r}")
    if int(worst_window) != worst_window or worst_window < 1:
        raise ValueError(f"worst_window must be an integer >= 1, got {worst_window!r}")

    def scenario(start, end) -> dict:
        sub = r.loc[start:end]
        miss = sub.isna()
        missing = [s for s in held.index if miss[s].any()]
        rp = pd.Series(sub.fillna(0.0).to_numpy() @ held.to_numpy(), index=sub.index)
        row = {"start": pd.Timestamp(start), "end": pd.Timestamp(end), "days": len(sub)}
        row.update(_window_stats(rp))
        row.update(
            missing_symbols=",".join(map(str, missing)),
            missing_weight=float(held[missing].abs().sum()) if missing else 0.0,
            missing_obs=int(miss.to_numpy().sum()),
        )
        return row

    rows = {}
    for name, (start, end) in windows.items():
        if pd.Timestamp(start) > pd.Timestamp(end):
            raise ValueError(f"stress window {name!r}: start {start} is after end {end}")
        rows[name] = scenario(start, end)
    if worst_k:
        rp_all = pd.Series(r.fillna(0.0).to_numpy() @ held.to_numpy(), index=r.index)
        comp = np.log1p(rp_all.clip(lower=-1 + 1e-12)).rolling(worst_window).sum().to_numpy()
        taken = np.zeros(len(comp), dtype=bool)
        order = np.argsort(np.where(np.isnan(comp), np.inf, comp), kind="stable")
        k = 0
        for end_i in order:
            if k >= worst_k or np.isnan(comp[end_i]):
                break
            lo = end_i - worst_window + 1
            if taken[lo : end_i + 1].any():
                continue
            taken[lo : end_i + 1] = True
            k += 1
            rows[f"worst {worst_window}d #{k}"] = scenario(r.index[lo], r.index[end_i])
    cols = ["start", "end", "days", "cumulative_return", "worst_day", "worst_day_date", "max_drawdown",
            "missing_symbols", "missing_weight", "missing_obs"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols)


# ---------------------------------------------------------------------------------------------
# Portfolio optimisation (skfolio)
# ---------------------------------------------------------------------------------------------


def overlay_strategies(
    close: pd.DataFrame,
    high: pd.DataFrame,
    low: pd.DataFrame,
    positions: pd.DataFrame,
    ex_ante_vol: pd.DataFrame,
    cost_bps: float = 0.0,
    target_vol: float = 0.15,
    max_gross: float = 0.95,
    stop_atr: float = 2.0,
    take_profit_ratio: float = 1.5,
    dd_threshold: float = 0.10,
    dd_floor: float = 0.25,
) -> dict:
    """One strategy with and without the risk overlays, all through the same backtest.

    Four variants of ``positions`` (volatility-targeted by :func:`kit.backtest.vol_scaled_weights`,
    simulated by :func:`kit.backtest.simulate` at ``cost_bps``): ``base``; ``ATR stops``
    (:func:`atr_stop_overlay` on the positions); ``drawdown control`` (the weights multiplied by
    :func:`drawdown_control` of the base strategy's returns, ``align="weights"``, feedback on the
    controlled equity: decided at each close from data up to it); ``stops + drawdown control``.
    Costs of every change of exposure are paid.

    Parameters
    ----------
    close, high, low : (T, N) adjusted prices covering ``positions``' dates and symbols.
    positions : (T_p, N) positions in [-1, 1].
    ex_ante_vol : (T, N) annualised ex-ante volatility.

    Returns
    -------
    dict name -> :class:`kit.backtest.BacktestResult`, plus ``"exposure_multiplier"`` -> (T_p,)
    Series of the drawdown control's multiplier (on the base returns).

    Raises
    ------
    ValueError
        As the functions it calls.
    """
    from . import backtest

    idx, cols = positions.index, positions.columns
    px, hi, lo = (f.reindex(index=close.index, columns=cols) for f in (close, high, low))
    vol = ex_ante_vol.reindex(index=idx, columns=cols)
    stopped = atr_stop_overlay(positions.reindex(close.index), hi, lo, px, stop_atr=stop_atr, take_profit_ratio=take_profit_ratio).reindex(idx)
    out = {}
    for name, pos in (("base", positions), ("ATR stops", stopped)):
        w = backtest.vol_scaled_weights(pos, vol, target_vol, max_gross)
        out[name] = backtest.simulate(px.reindex(idx), w, cost_bps, name)
        m = drawdown_control(out[name].returns, dd_threshold, dd_floor, align="weights")
        label = "drawdown control" if name == "base" else "stops + drawdown control"
        out[label] = backtest.simulate(px.reindex(idx), w.mul(m, axis=0), cost_bps, label)
        if name == "base":
            out["exposure_multiplier"] = m
    return {k: out[k] for k in ("base", "ATR stops", "drawdown control", "stops + drawdown control", "exposure_multiplier")}


class OptimisationError(RuntimeError):
    """The optimiser failed or the problem is infeasible; the message names the method."""


def optimise_weights(
    returns: pd.DataFrame,
    method: str = "min_variance",
    limits: Limits | None = None,
    *,
    views: Mapping[str, float] | list[str] | None = None,
    view_confidences: list[float] | None = None,
    market_weights: pd.Series | None = None,
    risk_aversion: float = 1.0,
    tau: float = 0.05,
    budget: float = 1.0,
    long_only: bool = True,
    risk_free_rate: float = 0.0,
    solver: str = "CLARABEL",
    solver_params: dict | None = None,
) -> pd.Series:
    """Optimal portfolio weights under :class:`Limits`, through skfolio (see the module docstring).

    Methods (sample moments of daily returns; ``risk_free_rate`` is daily):

    * ``"max_sharpe"``: maximise ``(mu'w - rf) / sqrt(w' Sigma w)`` (Markowitz, 1952; tangency
      portfolio), skfolio ``MeanRisk(MAXIMIZE_RATIO, STANDARD_DEVIATION)``.
    * ``"min_variance"``: minimise ``w' Sigma w``, ``MeanRisk(MINIMIZE_RISK, VARIANCE)``.
    * ``"risk_parity"``: equal risk contributions ``w_i (Sigma w)_i`` (Maillard, Roncalli & Teiletche,
      2010), skfolio ``RiskBudgeting(VARIANCE)``; long only. When ``max_position`` binds, the capped
      names contribute less and the others share equally.
    * ``"black_litterman"``: max Sharpe on the Black-Litterman posterior (Black & Litterman, 1992;
      He & Litterman, 1999), prior ``pi = risk_aversion * Sigma w_mkt`` (skfolio ``EquilibriumMu``;
      ``market_weights`` default 1/N), posterior from ``views`` with uncertainty ``tau``. Without
      views the posterior mean is ``pi`` and the covariance ``(1 + tau) Sigma``, so the unconstrained
      solution is ``w_mkt`` rescaled to the budget (tested).

    Constraints: ``sum w = budget`` (net exposure); ``|w_i| <= max_position`` (``0 <= w_i`` when
    long only or ``limits.allow_short`` is False); for long-short books the long side is capped at
    ``(G + budget) / 2`` and the short side at ``(G - budget) / 2`` with ``G = min(max_gross,
    max_leverage)``, which with the budget equality is exactly ``sum |w| <= G``. The solution is then
    passed through :func:`apply_limits` to remove solver noise (at most 1e-6, checked).

    Parameters
    ----------
    returns : (T, N) DataFrame of daily simple returns; rows with any NaN are dropped (the
        covariance needs a common sample).
    method : one of :data:`OPTIMISATION_METHODS`.
    limits : :class:`Limits`, or None for no limits beyond the budget.
    views : Black-Litterman views: a dict ``{symbol: expected daily return}`` (absolute views) or a
        list of skfolio view strings such as ``"AAA - BBB == 0.0002"``.
    view_confidences : optional Idzorek confidences in [0, 1], one per view.
    market_weights : (N,) Series of the equilibrium (market) weights for Black-Litterman.
    risk_aversion, tau : Black-Litterman parameters (defaults 1.0, 0.05).
    budget : net exposure of the result (default 1.0, fully invested), ``|budget| <= max_net``.
    long_only : no short positions (default True).
    risk_free_rate : daily risk-free rate for the Sharpe ratio (default 0).
    solver : cvxpy solver name (default CLARABEL).
    solver_params : keyword arguments for the solver; default for CLARABEL: gap and feasibility
        tolerances 1e-10 (the library default of 1e-8 leaves weight errors near 1e-4 on flat
        minimum-variance problems). Variance objectives are also scaled by ``1 / mean(diag Sigma)``
        so that daily-return variances (~1e-4) do not sit below the solver's tolerances.

    Returns
    -------
    (N,) float64 Series of weights indexed like ``returns.columns``, named after the method.

    Raises
    ------
    ValueError
        Unknown method, bad parameters, budget outside the limits, fewer than 2 complete rows.
    OptimisationError
        The solver failed or the problem is infeasible (e.g. ``N * max_position < budget``, or no
        asset with a positive excess return for max Sharpe); the message names the method.
    """
    if method not in OPTIMISATION_METHODS:
        raise ValueError(f"method must be one of {OPTIMISATION_METHODS}, got {method!r}")
    if not isinstance(returns, pd.DataFrame):
        raise TypeError(f"returns must be a DataFrame, got {type(returns).__name__}")
    X = returns.astype("float64").dropna(how="any")
    if np.isinf(X.to_numpy()).any():
        raise ValueError("returns contain infinite values")
    if len(X) < 2:
        raise ValueError(f"returns have {len(X)} complete rows; need at least 2")
    X.columns = [str(c) for c in X.columns]
    n = X.shape[1]
    if not math.isfinite(budget):
        raise ValueError(f"budget must be finite, got {budget!r}")
    lim = limits if limits is not None else Limits(max_position=math.inf, max_gross=math.inf, max_net=math.inf, max_leverage=math.inf)
    long_only = bool(long_only) or not lim.allow_short
    G = lim.gross_cap
    if abs(budget) > lim.max_net * (1 + _TOL):
        raise ValueError(f"budget {budget!r} exceeds Limits.max_net {lim.max_net!r}")
    if abs(budget) > G * (1 + _TOL):
        raise ValueError(f"budget {budget!r} exceeds the gross cap min(max_gross, max_leverage) = {G!r}")
    where = f"optimise_weights(method={method!r})"
    if (long_only or method == "risk_parity") and budget <= 0:
        raise ValueError(f"{where}: a long-only book needs budget > 0, got {budget!r}")
    if method == "risk_parity" and not long_only:
        raise ValueError(f"{where}: risk parity is long only; pass long_only=True")
    if n * lim.max_position < abs(budget) * (1 - _TOL):
        raise OptimisationError(
            f"{where} is infeasible: {n} names x max_position {lim.max_position} < |budget| {budget}"
        )

    from skfolio import RiskMeasure
    from skfolio.moments import EquilibriumMu
    from skfolio.optimization import MeanRisk, ObjectiveFunction, RiskBudgeting
    from skfolio.prior import BlackLitterman, EmpiricalPrior

    mp = lim.max_position if math.isfinite(lim.max_position) else None
    if solver_params is None:
        solver_params = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10} if solver == "CLARABEL" else {}
    mean_var = float(X.var().mean())
    var_scale = 1.0 / mean_var if mean_var > 0 else None
    kw: dict = {"solver": solver, "solver_params": dict(solver_params), "raise_on_failure": True}
    if method == "risk_parity":
        # skfolio fixes the risk-budgeting budget at 1; weights scale linearly, so solve for 1 and
        # rescale (the per-name bound scaled by 1 / budget).
        model = RiskBudgeting(
            risk_measure=RiskMeasure.VARIANCE,
            prior_estimator=EmpiricalPrior(),
            min_weights=0.0,
            max_weights=None if mp is None else min(mp / budget, 1.0),
            scale_objective=var_scale,
            **kw,
        )
        scale = budget
    else:
        scale = 1.0
        if long_only:
            kw.update(min_weights=0.0, max_weights=mp)
        else:
            max_short = (G - budget) / 2 if math.isfinite(G) else None
            no_short = max_short is not None and max_short <= 1e-12
            kw.update(min_weights=0.0 if no_short else (-mp if mp is not None else None), max_weights=mp)
            if math.isfinite(G):
                kw.update(max_long=(G + budget) / 2)
                if not no_short:
                    kw.update(max_short=max_short)
        kw.update(budget=float(budget))
        if method == "black_litterman":
            mw = None
            if market_weights is not None:
                m = _as_weights(market_weights, "market_weights")
                m.index = [str(s) for s in m.index]
                lost = [s for s in X.columns if s not in m.index]
                if lost:
                    raise ValueError(f"market_weights lack symbols {lost}")
                mw = m.reindex(X.columns).to_numpy()
            if isinstance(views, Mapping):
                view_list = [f"{s} == {float(v)!r}" for s, v in views.items()]
            else:
                view_list = list(views or [])
            prior = BlackLitterman(
                views=view_list,
                view_confidences=view_confidences,
                tau=tau,
                prior_estimator=EmpiricalPrior(mu_estimator=EquilibriumMu(risk_aversion=risk_aversion, weights=mw)),
            )
        else:
            prior = EmpiricalPrior()
        if method == "min_variance":
            model = MeanRisk(
                objective_function=ObjectiveFunction.MINIMIZE_RISK,
                risk_measure=RiskMeasure.VARIANCE,
                prior_estimator=prior,
                scale_objective=var_scale,
                **kw,
            )
        else:
            model = MeanRisk(
                objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
                risk_measure=RiskMeasure.STANDARD_DEVIATION,
                risk_free_rate=risk_free_rate,
                prior_estimator=prior,
                **kw,
            )
    try:
        model.fit(X)
        raw = np.asarray(model.weights_, dtype="float64") * scale
    except Exception as err:  # skfolio / cvxpy raise several types; all mean "no solution"
        raise OptimisationError(f"{where} failed: {type(err).__name__}: {err}") from err
    if raw.shape != (n,) or not np.isfinite(raw).all():
        raise OptimisationError(f"{where} returned non-finite weights")
    tol = 1e-6
    breaches = []
    if mp is not None and np.abs(raw).max() > mp + tol:
        breaches.append(f"max |w| {np.abs(raw).max():.8g} > max_position {mp}")
    if np.abs(raw).sum() > G + tol:
        breaches.append(f"gross {np.abs(raw).sum():.8g} > {G}")
    if abs(raw.sum() - budget) > tol:
        breaches.append(f"net {raw.sum():.8g} != budget {budget}")
    if long_only and raw.min() < -tol:
        breaches.append(f"min weight {raw.min():.8g} < 0 for a long-only book")
    if breaches:
        raise OptimisationError(f"{where}: solution breaks the limits beyond {tol}: " + "; ".join(breaches))
    if long_only:
        raw = np.maximum(raw, 0.0)
    w = pd.Series(raw, index=returns.columns, name=method)
    if limits is not None:
        w = apply_limits(w, limits)
    return w


# ---------------------------------------------------------------------------------------------
# Pre-trade check
# ---------------------------------------------------------------------------------------------


@dataclass
class PreTradeResult:
    """Outcome of :func:`pre_trade_check`.

    Attributes
    ----------
    accepted : (N,) float64 Series of accepted target weights (the union of target and current symbols).
    violations : DataFrame with columns ``symbol`` (``PORTFOLIO`` for book-level checks), ``check``,
        ``value`` (offending value), ``limit``, ``action``; one row per change made or breach left.
    current : (N,) Series of current weights (0 where none).
    within_limits : whether ``accepted`` satisfies every limit (False only when names that cannot be
        traded, for want of a valid price, keep the book outside a limit; see ``check == "unresolved"``).
    notional : accepted weight x equity (currency), when ``equity`` was given.
    shares : notional / price (NaN where the price is invalid), when ``equity`` was given.
    """

    accepted: pd.Series
    violations: pd.DataFrame
    current: pd.Series
    within_limits: bool
    notional: pd.Series | None = None
    shares: pd.Series | None = None
    frozen: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing had to change (no violation rows)."""
        return self.violations.empty

    @property
    def trades(self) -> pd.Series:
        """Weight changes to execute, ``accepted - current``."""
        return (self.accepted - self.current).rename("trade")


def pre_trade_check(
    target_weights: pd.Series | Mapping[str, float],
    prices: pd.Series | Mapping[str, float],
    limits: Limits,
    current_weights: pd.Series | Mapping[str, float] | None = None,
    equity: float | None = None,
) -> PreTradeResult:
    """Check target weights against prices and limits; return accepted weights and every violation.

    Steps, in order (each change is recorded as a violation row with its action; nothing is dropped
    silently):

    1. ``missing_target``: a held symbol absent from the targets gets target 0 (closed).
    2. ``non_finite_target``: a NaN/inf target is replaced by the current weight (no trade).
    3. ``unknown_price`` / ``bad_price`` (not in ``prices``, or NaN, inf, <= 0): the name cannot be
       traded, so it is *frozen* at its current weight; later steps never change frozen names.
    4. ``min_price``: a name priced below ``limits.min_price`` gets weight 0.
    5. ``short_not_allowed`` (``allow_short=False``): a negative target gets weight 0.
    6. ``max_position``: clipped to ``+-max_position``.
       (Steps 6-8 ignore excesses below 1e-12 of the limit, float rounding such as
       ``6 * 0.01 = 0.060000000000000005``.)
    7. ``max_gross`` and ``max_leverage`` (each reported when exceeded): the tradable names are scaled
       by one factor so the gross equals ``min(max_gross, max_leverage)``.
    8. ``max_net``: the tradable names on the side in excess are scaled down so ``|net| = max_net``.
    9. ``max_turnover``: the book moves from current toward the limited target by the fraction
       ``max_turnover / sum |target - current|``; if the current book breaks a limit, steps 6-8 run
       again (recorded with "after max_turnover"): the risk limits win over the turnover cap.
    10. ``unresolved``: any limit still broken (only possible through frozen names) is reported and
        ``within_limits`` is False.

    Parameters
    ----------
    target_weights : (N,) Series or dict of target weights (fractions of equity) by symbol.
    prices : Series or dict of last prices by symbol (currency per share).
    limits : :class:`Limits`.
    current_weights : Series or dict of current weights (default none held); must be finite.
    equity : account equity (currency), > 0; when given the result carries ``notional`` and ``shares``.

    Returns
    -------
    :class:`PreTradeResult`.

    Raises
    ------
    ValueError
        ``current_weights`` not finite, ``equity`` not finite and positive, duplicate symbols.
    TypeError
        ``limits`` is not a :class:`Limits` or an input is not a Series/dict.
    """
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    tgt_in = _as_weights(target_weights, "target_weights")
    cur_in = _as_weights(current_weights if current_weights is not None else pd.Series(dtype="float64"), "current_weights")
    if not np.isfinite(cur_in.to_numpy()).all():
        raise ValueError(f"current_weights must be finite; bad symbols: {list(cur_in.index[~np.isfinite(cur_in.to_numpy())])}")
    if isinstance(prices, Mapping):
        prices = pd.Series(dict(prices), dtype="float64")
    if not isinstance(prices, pd.Series):
        raise TypeError(f"prices must be a Series or dict, got {type(prices).__name__}")
    if not prices.index.is_unique:
        raise ValueError(f"prices has duplicate symbols: {list(prices.index[prices.index.duplicated()])}")
    if equity is not None and not (math.isfinite(equity) and equity > 0):
        raise ValueError(f"equity must be finite and > 0, got {equity!r}")

    symbols = list(tgt_in.index) + [s for s in cur_in.index if s not in tgt_in.index]
    cur = cur_in.reindex(symbols).fillna(0.0).to_numpy()
    tgt = tgt_in.reindex(symbols).to_numpy(copy=True)
    px = pd.to_numeric(prices.reindex(symbols), errors="coerce").astype("float64").to_numpy()
    known = np.array([s in prices.index for s in symbols], dtype=bool)
    rows: list[dict] = []

    def rec(symbol, check, value, limit, action):
        rows.append({"symbol": symbol, "check": check, "value": float(value), "limit": float(limit), "action": action})

    in_target = np.array([s in tgt_in.index for s in symbols], dtype=bool)
    for i, s in enumerate(symbols):
        if not in_target[i]:
            tgt[i] = 0.0
            rec(s, "missing_target", cur[i], np.nan, "no target given: target 0 (close)")
        elif not np.isfinite(tgt[i]):
            rec(s, "non_finite_target", tgt[i], np.nan, f"kept current weight {cur[i]:.6g}")
            tgt[i] = cur[i]
    frozen = np.zeros(len(symbols), dtype=bool)
    for i, s in enumerate(symbols):
        if known[i] and np.isfinite(px[i]) and px[i] > 0:
            continue
        frozen[i] = True
        if tgt[i] != cur[i]:
            check = "unknown_price" if not known[i] else "bad_price"
            rec(s, check, px[i], np.nan, f"frozen at current weight {cur[i]:.6g} (no valid price to trade at)")
            tgt[i] = cur[i]
    free = ~frozen
    if limits.min_price > 0:
        for i in np.flatnonzero(free & (px < limits.min_price) & (tgt != 0)):
            rec(symbols[i], "min_price", px[i], limits.min_price, f"zeroed (target was {tgt[i]:.6g})")
            tgt[i] = 0.0

    def limit_pass(w: np.ndarray, stage: str) -> np.ndarray:
        w = w.copy()
        if not limits.allow_short:
            for i in np.flatnonzero(free & (w < 0)):
                rec(symbols[i], "short_not_allowed", w[i], 0.0, "zeroed" + stage)
                w[i] = 0.0
        for i in np.flatnonzero(free & (np.abs(w) > limits.max_position * (1 + _NOISE))):
            rec(symbols[i], "max_position", w[i], limits.max_position, f"clipped to {np.sign(w[i]) * limits.max_position:+.6g}" + stage)
            w[i] = np.sign(w[i]) * limits.max_position
        g = float(np.abs(w).sum())
        if g > limits.gross_cap * (1 + _NOISE):
            f = float(_gross_factor(w, limits.gross_cap, free)[0])
            action = f"scaled tradable weights by {f:.6g}" + stage
            if g > limits.max_gross:
                rec(PORTFOLIO, "max_gross", g, limits.max_gross, action)
            if g > limits.max_leverage:
                rec(PORTFOLIO, "max_leverage", g, limits.max_leverage, action)
            w = np.where(free, w * f, w)
        net = float(w.sum())
        if abs(net) > limits.max_net * (1 + _NOISE):
            fl, fs = _net_factors(w, limits.max_net, free)
            side, f = ("longs", float(fl[0])) if net > 0 else ("shorts", float(fs[0]))
            rec(PORTFOLIO, "max_net", net, limits.max_net, f"scaled tradable {side} by {f:.6g}" + stage)
            w = np.where(free & (w > 0), w * fl[0], np.where(free & (w < 0), w * fs[0], w))
        return w

    w = limit_pass(tgt, "")
    if limits.max_turnover is not None:
        d = float(np.abs(w - cur).sum())
        w_new, lam = _blend_turnover(w, cur, limits.max_turnover)
        if lam < 1.0:
            rec(PORTFOLIO, "max_turnover", d, limits.max_turnover, f"moved {lam:.6g} of the way from current to target")
            w = w_new
            if not _within_limits(w, limits):
                w = limit_pass(w, " (after max_turnover)")
    within = _within_limits(w, limits)
    if not within:
        fz = [symbols[i] for i in np.flatnonzero(frozen & (w != 0))]
        note = f"unresolved: frozen names without a valid price {fz}"
        for i in np.flatnonzero(np.abs(w) > limits.max_position * (1 + _TOL) + _TOL):
            rec(symbols[i], "unresolved", w[i], limits.max_position, note + " (max_position)")
        if not limits.allow_short:
            for i in np.flatnonzero(w < -_TOL):
                rec(symbols[i], "unresolved", w[i], 0.0, note + " (short_not_allowed)")
        g = float(np.abs(w).sum())
        if g > limits.gross_cap * (1 + _TOL) + _TOL:
            rec(PORTFOLIO, "unresolved", g, limits.gross_cap, note + " (gross)")
        if abs(w.sum()) > limits.max_net * (1 + _TOL) + _TOL:
            rec(PORTFOLIO, "unresolved", w.sum(), limits.max_net, note + " (net)")
    accepted = pd.Series(w, index=symbols, name="accepted", dtype="float64")
    violations = pd.DataFrame(rows, columns=["symbol", "check", "value", "limit", "action"])
    notional = shares = None
    if equity is not None:
        notional = (accepted * float(equity)).rename("notional")
        valid_px = pd.Series(np.where(free, px, np.nan), index=symbols)
        shares = (notional / valid_px).rename("shares")
    return PreTradeResult(
        accepted=accepted,
        violations=violations,
        current=pd.Series(cur, index=symbols, name="current"),
        within_limits=within,
        notional=notional,
        shares=shares,
        frozen=[symbols[i] for i in np.flatnonzero(frozen)],
    )
