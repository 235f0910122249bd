"""Portfolio optimisation under the kit's limits through skfolio (max-Sharpe, minimum variance, risk
parity, Black-Litterman). Why skfolio: ``docs/decisions/0002-skfolio-for-optimisation.md``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .limits import _TOL, Limits, _as_weights, apply_limits

__all__ = ["OPTIMISATION_METHODS", "OptimisationError", "optimise_weights"]



OPTIMISATION_METHODS = ("max_sharpe", "min_variance", "risk_parity", "black_litterman")



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

