"""Model evaluation for the registry and its promotion gate: out-of-sample metrics per walk-forward
fold and over the whole stitched test period.

On each walk-forward test block, with ``r_{t+1} = close_{t+1} / close_t - 1``:

* ``direction_accuracy``: share of calls with ``sign(call_t) == sign(r_{t+1})`` over (date, symbol)
  pairs with a non-zero call and a known next-day return, where the call is the position (position
  models) or the 1-day forecast (forecasters). A zero realised return counts as a miss.
* ``mape`` (forecasters): mean absolute percentage error of the predicted PRICE at the next-day
  horizon, ``|close_t (1 + f_{t,1}) - close_{t+1}| / close_{t+1}`` (seed 003's "average absolute
  price error"); ``mape_{h}`` for every forecast horizon h is kept in the fold's ``extra``.
* ``leakage_rows``: the fold's leakage count recorded by the trainer (max over an ensemble's members,
  which share the split).
* ``sharpe_ratio``: annualised Sharpe ratio (:func:`kit.analytics.sharpe.sharpe_ratio`, 252 days) of the equal-weight average of
  the volatility-scaled captured returns ``position_t r_{t+1} / sigma_t`` (Lim et al., 2019, eq. 1 up
  to the constant target volatility; ``sigma`` is :func:`kit.features.indicators.ex_ante_vol`); forecasters
  trade ``sign(f_{t,1})``. ``benchmark_sharpe``: the same for long only (position 1) on the same
  (date, symbol) pairs.
* Costs (``cost_bps`` = c in basis points, default 0): both Sharpe ratios are net of
  ``c 1e-4 |x_t / sigma_t - x_{t-1} / sigma_{t-1}|`` per (date, symbol) (Lim et al., 2019, section
  "Transaction costs": the cost term of the volatility-scaled return, up to the same constant target
  volatility); a symbol's first traded day is charged from a flat position, a day without a
  position counts as flat, and a fold's first day from the previous fold's last position.
  ``gross_sharpe_ratio`` keeps the ratio before costs.

Quantile forecasters (foundation models, :func:`quantile_metrics`), per horizon h with the realised
``a = close_{t+h} / close_t - 1``: ``coverage_10_90`` = share of ``q10 <= a <= q90`` (nominal 0.8),
``below_q10`` and ``above_q90`` (nominal 0.1 each), the mean pinball loss over the levels 0.1, 0.5,
0.9 (Koenker & Bassett, 1978; :func:`kit.models.pinball_loss`), ``mae_median`` = mean ``|q50 - a|``,
``mean_width`` = mean ``q90 - q10``, and the direction accuracy of ``sign(q50)`` as above.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import daily_returns, ex_ante_vol
from ..models import pinball_loss
from .sharpe import sharpe_ratio

__all__ = ["fold_metrics", "oos_metrics", "quantile_metrics"]



def _check_close(close: pd.DataFrame, frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(close, pd.DataFrame):
        raise TypeError(f"close must be a (T, N) DataFrame, got {type(close).__name__}")
    missing = [c for c in frame.columns if c not in close.columns]
    if missing:
        raise ValueError(f"{what} has symbols not in close: {missing[:5]}")
    outside = frame.index.difference(close.index)
    if len(outside):
        raise ValueError(f"{what} has dates not in close, first {outside[0].date()}")
    return close[list(frame.columns)].astype("float64")



def _check_cost(cost_bps) -> float:
    if isinstance(cost_bps, bool) or not isinstance(cost_bps, int | float | np.integer | np.floating) or not np.isfinite(cost_bps) or cost_bps < 0:
        raise ValueError(f"cost_bps must be a finite number >= 0 (basis points), got {cost_bps!r}")
    return float(cost_bps)


def _cost_terms(trade: pd.DataFrame, vol: pd.DataFrame, cost_bps: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (date, symbol) cost of the strategy and of long only in captured-return units:
    ``c |x_t / sigma_t - x_{t-1} / sigma_{t-1}|`` over the whole stitched frame (a missing position or
    volatility is a flat book), so a fold's first day is charged from the previous fold's last."""
    c = cost_bps * 1e-4
    inv = (1.0 / vol.where(vol > 0)).fillna(0.0)
    held = (trade.fillna(0.0) * inv)
    strat = c * held.diff().fillna(held).abs()
    bench = c * inv.diff().fillna(inv).abs()
    return strat, bench


def _captured(calls: pd.DataFrame, r1: pd.DataFrame, vol: pd.DataFrame, costs: tuple) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Daily equal-weight captured returns over the live (date, symbol) pairs: the strategy net of
    ``costs[0]``, long only net of ``costs[1]`` (:func:`_cost_terms`) and the strategy gross."""
    live = np.isfinite(calls) & np.isfinite(r1) & (vol > 0)
    gross_r = calls * r1 / vol
    strat_r, bench_r = gross_r - costs[0].reindex_like(gross_r), r1 / vol - costs[1].reindex_like(gross_r)
    return tuple(x.where(live).mean(axis=1).dropna() for x in (strat_r, bench_r, gross_r))



def _sharpe(r: pd.Series) -> float | None:
    """Annualised Sharpe ratio of ``r``, or None when undefined (fewer than 2 days, zero dispersion)."""
    v = sharpe_ratio(r) if len(r) >= 2 else float("nan")
    return v if np.isfinite(v) else None


def _calls_and_inputs(result, close, forecasts):
    positions = getattr(result, "positions", None)
    if forecasts is None:
        forecasts = getattr(result, "forecasts", None)
    forecasts = {int(h): f for h, f in (forecasts or {}).items()}
    if forecasts and 1 not in forecasts:
        raise ValueError(f"forecasts need the 1-day horizon (key 1), got horizons {sorted(forecasts)}")
    if positions is None and not forecasts:
        raise ValueError("result has no positions and no forecasts were given")
    ref = forecasts[1] if forecasts else positions
    c = _check_close(close, ref, "forecasts[1]" if forecasts else "result.positions")
    calls = np.sign(forecasts[1]) if forecasts else positions
    trade = positions if positions is not None else np.sign(forecasts[1])
    vol = ex_ante_vol(daily_returns(c)).reindex(ref.index)
    r1 = (c.shift(-1) / c - 1.0).reindex(ref.index)
    return calls, trade, forecasts, c, r1, vol



def fold_metrics(result, close: pd.DataFrame, *, forecasts: dict | None = None, cost_bps: float = 0.0) -> pd.DataFrame:
    """Out-of-sample metrics per walk-forward fold, for the registry and the promotion gate.

    Parameters
    ----------
    result : :class:`kit.training.walk_forward.WalkForwardResult` (or any object with ``folds``, a frame with
        ``fold, test_start, test_end, leakage_rows`` per fold and model, and ``positions``, the
        stitched ``(T_test, N)`` out-of-sample positions in [-1, 1], which may be None for a
        forecaster when ``forecasts`` is given).
    close : (T, N) DataFrame of (adjusted) closes covering the test dates plus the next 21 days.
    forecasts : optional mapping horizon (trading days) -> ``(T_test, N)`` DataFrame of forecast
        simple returns over that horizon (a forecaster such as :class:`kit.models.ldtm.LDTMForecaster`);
        default ``result.forecasts`` when the result has them (:func:`kit.training.walk_forward.walk_forward_ldtm`);
        horizon 1 is required. Its sign is the direction call and, without positions, the traded
        position.
    cost_bps : float >= 0, basis points charged on the change of the volatility-scaled position
        (module docstring); 0 gives the gross Sharpe ratios.

    Returns
    -------
    DataFrame, one row per fold: ``fold`` (int), ``test_start``, ``test_end`` (date), ``n_obs``
    (directional calls with a known outcome), ``direction_accuracy``, ``mape`` (NaN for position
    models), ``leakage_rows`` (int), ``sharpe_ratio``, ``benchmark_sharpe`` (annualised, net of
    ``cost_bps``; NaN when undefined), ``gross_sharpe_ratio`` (before costs), plus ``mape_{h}`` per
    forecast horizon. Formulas in the module docstring.

    Raises
    ------
    ValueError
        Missing fold columns, symbols or dates of the predictions not in ``close``, forecasts without
        horizon 1, ``cost_bps`` negative or not finite.
    """
    folds = getattr(result, "folds", None)
    if folds is None or not {"fold", "test_start", "test_end", "leakage_rows"} <= set(folds.columns):
        raise ValueError("result.folds must have columns fold, test_start, test_end, leakage_rows")
    cost_bps = _check_cost(cost_bps)
    calls, trade, forecasts, c, r1, vol = _calls_and_inputs(result, close, forecasts)
    costs = _cost_terms(trade, vol, cost_bps)
    per_fold = folds.groupby("fold").agg(test_start=("test_start", "first"), test_end=("test_end", "first"), leakage_rows=("leakage_rows", "max"))
    rows = []
    for fold, f in per_fold.iterrows():
        ts, te = pd.Timestamp(f["test_start"]), pd.Timestamp(f["test_end"])
        idx = calls.index[(calls.index >= ts) & (calls.index <= te)]
        d, r = calls.loc[idx].to_numpy(float), r1.loc[idx].to_numpy(float)
        called = np.isfinite(d) & (d != 0) & np.isfinite(r)
        n_obs = int(called.sum())
        acc = float((np.sign(d) == np.sign(r))[called].mean()) if n_obs else float("nan")
        row = {"fold": int(fold), "test_start": ts.date(), "test_end": te.date(), "n_obs": n_obs, "direction_accuracy": acc, "mape": float("nan"), "leakage_rows": int(f["leakage_rows"])}
        for h, fc in sorted(forecasts.items()):
            pred = c.loc[idx] * (1.0 + fc.reindex(index=idx, columns=c.columns))
            actual = c.shift(-h).loc[idx]
            ape = ((pred - actual).abs() / actual).to_numpy(float)
            ape = ape[np.isfinite(ape)]
            row[f"mape_{h}"] = float(ape.mean()) if len(ape) else float("nan")
        if forecasts:
            row["mape"] = row["mape_1"]
        strat, bench, gross = _captured(trade.loc[idx], r1.loc[idx], vol.loc[idx], (costs[0].loc[idx], costs[1].loc[idx]))
        for key, r in (("sharpe_ratio", strat), ("benchmark_sharpe", bench), ("gross_sharpe_ratio", gross)):
            v = _sharpe(r)
            row[key] = v if v is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)



def oos_metrics(result, close: pd.DataFrame, *, forecasts: dict | None = None, cost_bps: float = 0.0) -> dict:
    """Whole stitched out-of-sample period: ``{"sharpe_ratio", "benchmark_sharpe",
    "gross_sharpe_ratio", "cost_bps", "n_days"}``: annualised Sharpe ratios as in :func:`fold_metrics`
    (the first two net of ``cost_bps``; None when undefined).

    Raises
    ------
    ValueError
        As :func:`fold_metrics`.
    """
    cost_bps = _check_cost(cost_bps)
    calls, trade, forecasts, c, r1, vol = _calls_and_inputs(result, close, forecasts)
    strat, bench, gross = _captured(trade, r1, vol, _cost_terms(trade, vol, cost_bps))
    return {"sharpe_ratio": _sharpe(strat), "benchmark_sharpe": _sharpe(bench), "gross_sharpe_ratio": _sharpe(gross), "cost_bps": cost_bps,
            "n_days": int(len(strat))}



def quantile_metrics(quantile_forecasts: dict, close: pd.DataFrame) -> pd.DataFrame:
    """Calibration and accuracy of quantile forecasts against the realised returns, per horizon
    (formulas in the module docstring).

    Parameters
    ----------
    quantile_forecasts : ``{q: {h: (T_test, N) DataFrame}}`` for q in 0.1, 0.5, 0.9 (e.g.
        :attr:`kit.training.FoundationWalkForwardResult.quantile_forecasts`): forecast simple returns
        over h trading days made at each date.
    close : (T, N) DataFrame of (adjusted) closes covering the forecast dates plus h days.

    Returns
    -------
    DataFrame, one row per horizon: ``horizon, n`` ((date, symbol) pairs with all three quantiles
    and a realised return), ``coverage_10_90, below_q10, above_q90, pinball, mae_median,
    mean_width, direction_accuracy``; NaN where ``n`` is 0.

    Raises
    ------
    ValueError
        Levels other than 0.1, 0.5, 0.9 missing, horizons that differ between levels, or dates or
        symbols not in ``close``.
    """
    import torch

    qf = {float(q): {int(h): f for h, f in d.items()} for q, d in quantile_forecasts.items()}
    if not {0.1, 0.5, 0.9} <= set(qf):
        raise ValueError(f"quantile_forecasts needs the levels 0.1, 0.5 and 0.9, got {sorted(qf)}")
    hs = sorted(qf[0.5])
    if sorted(qf[0.1]) != hs or sorted(qf[0.9]) != hs:
        raise ValueError(f"quantile_forecasts' levels have different horizons: {sorted(qf[0.1])}, {hs}, {sorted(qf[0.9])}")
    rows = []
    for h in hs:
        mid = qf[0.5][h]
        c = _check_close(close, mid, f"quantile_forecasts[0.5][{h}]")
        actual = (c.shift(-h) / c - 1.0).reindex(mid.index).to_numpy(float)
        lo, md, hi = (qf[q][h].reindex(index=mid.index, columns=mid.columns).to_numpy(float) for q in (0.1, 0.5, 0.9))
        ok = np.isfinite(lo) & np.isfinite(md) & np.isfinite(hi) & np.isfinite(actual)
        a, lo, md, hi = actual[ok], lo[ok], md[ok], hi[ok]
        n = int(ok.sum())
        row = {"horizon": h, "n": n}
        if n == 0:
            rows.append({**row, **dict.fromkeys(("coverage_10_90", "below_q10", "above_q90", "pinball", "mae_median", "mean_width",
                                                  "direction_accuracy"), float("nan"))})
            continue
        pred = torch.from_numpy(np.stack([lo, md, hi], axis=-1)[:, None, :])
        pin = pinball_loss(pred, torch.from_numpy(a[:, None]), torch.ones((n, 1), dtype=torch.bool), (0.1, 0.5, 0.9))
        called = md != 0
        row.update(
            coverage_10_90=float(((lo <= a) & (a <= hi)).mean()), below_q10=float((a < lo).mean()), above_q90=float((a > hi).mean()),
            pinball=float(pin), mae_median=float(np.abs(md - a).mean()), mean_width=float((hi - lo).mean()),
            direction_accuracy=float((np.sign(md) == np.sign(a))[called].mean()) if called.any() else float("nan"),
        )
        rows.append(row)
    return pd.DataFrame(rows)
