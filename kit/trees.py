"""Gradient-boosted trees on tabular (date, symbol) rows: LambdaMART ranking, direction and return
models, the seed-004 "dollar profit" objective, and a stacking meta-learner.

Libraries: LightGBM 4.7 (``lightgbm==4.7.0``) and XGBoost 3.2, CPU build (``xgboost-cpu==3.2.0``;
3.4.1 needs Python >= 3.12 and the kit is on 3.11). The learning-to-rank model is LightGBM's
``lambdarank`` (LambdaMART, Burges 2010): LightGBM is maintained by Microsoft, ships CPU wheels with
no extra system dependency, has a ``deterministic`` mode, and its ranker takes query groups as
plain sizes; XGBoost's ``rank:ndcg`` would do as well, one library is enough.

Rows and look-ahead
-------------------
A :class:`TabularDataset` holds one row per (date, symbol) with features known at the close of
the row's date t (the ``(T, N, F)`` arrays of :mod:`kit.features`), a target that uses prices after
t only, and ``label_end``: the date position of the last price the target uses (``t + h`` for an
h-day return, the next rebalance date for a next-period return). Walk-forward folds come from
:func:`kit.training.walk_forward_splits`; :func:`fold_rows` keeps a training row only if its
``label_end`` is before the validation block and a validation row only if its ``label_end`` is
before the test block: an embargo equal to each row's own label horizon. :func:`count_leakage`
counts violations (zero by construction; every walk-forward checks it and raises
:class:`kit.training.LeakageError` otherwise).

Positions (documented rules)
----------------------------
- classification (probability p of an up move): ``position = 2 p - 1``;
- regression (prediction y_hat): ``position = tanh(y_hat / scale)`` with ``scale`` the root mean
  square of the model's validation-block predictions (fitted on validation only; the RMS, not the
  std, so that a nearly constant non-zero prediction does not saturate every position at +-1);
- dollar profit (raw score s): ``position = tanh(s)``, the surrogate's own position;
- ranker / cross-sectional regressor: scores go to
  :func:`kit.cross_sectional.decile_long_short_weights` (top decile long, bottom short).

Seeding: LightGBM runs with ``deterministic=True``, ``force_row_wise=True``, fixed ``num_threads``
and ``seed``; XGBoost with ``seed`` and fixed ``nthread`` (``hist`` is deterministic on CPU).
The same inputs and seed give bit-identical scores (tested).

Imports from the flat kit: :mod:`kit.features` (FeatureArray, feature_set, forward_returns,
ex_ante_vol, daily_returns, normalised_returns), :mod:`kit.cross_sectional` (quantile buckets,
rebalance calendars, decile weights), :mod:`kit.training` (walk_forward_splits, Split,
LeakageError), :mod:`kit.models` (``ensemble_weights``, lazily, for the Sharpe stacker).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import cross_sectional as _cs
from . import features as _features
from .training import LeakageError, Split, walk_forward_splits

__all__ = [
    "TASKS",
    "LIBRARIES",
    "POINT_IN_TIME_NOTE",
    "POH_2021_HEADLINE",
    "TabularDataset",
    "tabular_dataset",
    "period_returns",
    "horizon_returns",
    "ltr_features",
    "fold_rows",
    "count_leakage",
    "cuda_available",
    "xgb_device",
    "dollar_profit_grad_hess",
    "dollar_profit",
    "lgb_dollar_profit_objective",
    "xgb_dollar_profit_objective",
    "positions_from_probability",
    "positions_from_prediction",
    "FoldPredictions",
    "TreeWalkForwardResult",
    "walk_forward_trees",
    "walk_forward_ranker",
    "fit_stacker",
    "walk_forward_stack",
]

TASKS = ("classification", "regression", "dollar_profit")
LIBRARIES = ("lightgbm", "xgboost")
POINT_IN_TIME_NOTE = (
    "The committed store holds the S&P 500 constituents of 2021 only: a survivorship bias no membership mask "
    "built from it can remove."
)

POH_2021_HEADLINE = """Poh, Lim, Zohren & Roberts (2021), "Building Cross-Sectional Systematic Strategies by Learning
to Rank", Journal of Financial Data Science 3(2) (arXiv:2012.07149). Headline: learning-to-rank models
(LambdaMART, ListNet, ListMLE, RankNet) give "approximately threefold boosting of Sharpe Ratios compared to
traditional approaches" (abstract) for monthly-rebalanced cross-sectional momentum decile portfolios on US
equities, with LambdaMART the best of them at an out-of-sample Sharpe ratio of about 2.1 (as reported by a
secondary summary of the paper's results table; the table itself could not be consulted while writing this,
so the exact figure, universe (CRSP US stocks) and test period (a multi-decade window including 2008) are
to be checked against the paper before quoting). Their portfolios scale each name to 15% target volatility;
ours are dollar-neutral deciles at gross 1 on ~100 large S&P 500 names, 2011-2021, without their
hyperparameter search: the numbers are not comparable beyond their sign and ordering.

Ours (a quick gross check, not the report; scripts/cs_quick_check.py): the 100 most liquid store symbols as of
2000-12-29 (survivors of 2021 only), data 2000-01-03..2021-04-21, yearly refits from 2011, returns
``sum_i w_{t,i} r_{t+1,i}`` from 2011-01-31, 0 costs, equal-weight deciles: Sharpe -0.04 for 12-1 momentum
(-0.08 inverse-vol legs), 0.13 for the MACD composite, 0.31 for LambdaMART and -0.02 for the pointwise
LightGBM regression baseline (which early-stopped after 1-5 trees in every fold). One run, no costs, no
confidence interval: no claim that ranking beats regression follows from it."""


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


@dataclass
class TabularDataset:
    """Tabular rows for tree models, sorted by date then symbol.

    Attributes
    ----------
    X : (R, F) float32 features (all finite).
    y : (R,) float64 target (NaN where the label is not known, e.g. at the end of the sample).
    label : (R,) int64 relevance label (0 = lowest quantile of ``y`` on the row's date), -1 where
        ``y`` is NaN or no labels were requested.
    date : (R,) int64 date positions on ``index``; symbol : (R,) int64 positions on ``columns``.
    label_end : (R,) int64 position of the last price the target uses (``T`` or more = beyond the data).
    feature_names, index (T dates), columns (N symbols).
    """

    X: np.ndarray
    y: np.ndarray
    label: np.ndarray
    date: np.ndarray
    symbol: np.ndarray
    label_end: np.ndarray
    feature_names: list
    index: pd.DatetimeIndex
    columns: pd.Index

    def __len__(self) -> int:
        return len(self.y)

    def groups(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Query-group sizes (rows per date, in date order) of ``rows`` (boolean mask or sorted
        integer positions; default all rows), as LightGBM's ``group`` wants them."""
        d = self.date if rows is None else self.date[rows]
        if len(d) and (np.diff(d) < 0).any():
            raise ValueError("rows must be sorted by date to form groups")
        _, counts = np.unique(d, return_counts=True)
        return counts.astype(np.int64)

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame indexed by (date, symbol): features, ``y``, ``label``, ``label_end_date``."""
        idx = pd.MultiIndex.from_arrays([self.index[self.date], self.columns[self.symbol]], names=["date", "symbol"])
        out = pd.DataFrame(self.X, index=idx, columns=self.feature_names)
        out["y"] = self.y
        out["label"] = self.label
        end = np.where(self.label_end < len(self.index), self.label_end, len(self.index) - 1)
        out["label_end_date"] = np.where(self.label_end < len(self.index), self.index[end], pd.NaT)
        return out


def _as_values(features) -> tuple[np.ndarray, list]:
    if isinstance(features, _features.FeatureArray):
        return features.values, list(features.names)
    arr = np.asarray(features, dtype="float64")
    if arr.ndim != 3:
        raise ValueError(f"features must be (T, N, F), got shape {arr.shape}")
    return arr, [f"f{i}" for i in range(arr.shape[2])]


def tabular_dataset(
    features,
    target: pd.DataFrame | np.ndarray,
    label_end: np.ndarray,
    index: pd.DatetimeIndex,
    columns: pd.Index,
    dates=None,
    membership=None,
    n_quantiles: int | None = None,
) -> TabularDataset:
    """Rows ``(date, symbol)`` with finite features, optionally only on ``dates`` and in a universe.

    Parameters
    ----------
    features : :class:`kit.features.FeatureArray` or ``(T, N, F)`` array (values at t use data up to t).
    target : ``(T, N)`` target at each decision date (uses prices after t; NaN allowed).
    label_end : ``(T,)`` or ``(T, N)`` int positions of the last price each target uses.
    index, columns : labels of the ``T`` dates and ``N`` symbols.
    dates : optional subset of date positions (e.g. rebalance dates); default every date.
    membership : optional ``(T, N)`` bool point-in-time universe.
    n_quantiles : if given, ``label`` = the cross-sectional quantile of ``y`` on the row's date
        among the dataset's rows with a finite ``y`` (:func:`kit.cross_sectional.quantile_buckets`)
        minus 1, so 0 .. n_quantiles - 1 (LambdaMART relevance; deciles for 10).

    Returns
    -------
    :class:`TabularDataset`.

    Raises
    ------
    ValueError
        Shapes disagree (named), or a ``label_end`` is not after its date.
    """
    values, names = _as_values(features)
    T, N, _ = values.shape
    tgt = np.asarray(target, dtype="float64")
    if tgt.shape != (T, N):
        raise ValueError(f"target has shape {tgt.shape}, features {(T, N)}")
    if len(index) != T or len(columns) != N:
        raise ValueError(f"index/columns have {len(index)}/{len(columns)} labels, features {(T, N)}")
    le = np.asarray(label_end)
    le = np.broadcast_to(le[:, None] if le.ndim == 1 else le, (T, N)).astype(np.int64)
    ok = np.isfinite(values).all(axis=2)
    if membership is not None:
        m = np.asarray(membership, dtype=bool)
        if m.shape != (T, N):
            raise ValueError(f"membership has shape {m.shape}, features {(T, N)}")
        ok &= m
    if dates is not None:
        sel = np.zeros(T, bool)
        sel[np.asarray(dates, dtype=np.int64)] = True
        ok &= sel[:, None]
    di, si = np.nonzero(ok)  # row-major: sorted by date, then symbol
    y = tgt[di, si]
    bad = np.isfinite(y) & (le[di, si] <= di)
    if bad.any():
        r = int(np.argmax(bad))
        raise ValueError(f"label_end {le[di[r], si[r]]} is not after its date position {di[r]} (a target must use later prices)")
    label = np.full(len(y), -1, np.int64)
    if n_quantiles is not None:
        grid = np.full((T, N), np.nan)
        grid[di, si] = y
        q = _cs.quantile_buckets(pd.DataFrame(grid), None, n_quantiles).to_numpy()[di, si]
        label = np.where(np.isfinite(q), q - 1, -1).astype(np.int64)
    return TabularDataset(
        values[di, si].astype(np.float32), y, label, di.astype(np.int64), si.astype(np.int64), le[di, si], names, pd.DatetimeIndex(index), pd.Index(columns)
    )


def period_returns(close: pd.DataFrame, rebalance) -> tuple[pd.DataFrame, np.ndarray]:
    """Next-period returns on rebalance dates: ``close_{t_{k+1}} / close_{t_k} - 1`` at ``t_k``.

    Parameters
    ----------
    close : (T, N) adjusted closes.
    rebalance : rebalance dates (a subset of ``close.index``).

    Returns
    -------
    (target, label_end): ``(T, N)`` DataFrame, NaN off rebalance dates, on the last rebalance date
    and where either price is missing; ``(T,)`` int64 position of ``t_{k+1}`` for each rebalance
    date ``t_k`` (``T`` elsewhere, i.e. beyond the data).
    """
    pos = _cs.rebalance_positions(close.index, rebalance)
    c = close.to_numpy(dtype="float64")
    T = len(c)
    out = np.full(c.shape, np.nan)
    end = np.full(T, T, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[pos[:-1]] = c[pos[1:]] / c[pos[:-1]] - 1.0
    end[pos[:-1]] = pos[1:]
    return pd.DataFrame(out, index=close.index, columns=close.columns), end


def horizon_returns(close: pd.DataFrame, horizon: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """h-day forward returns ``close_{t+h} / close_t - 1`` (:func:`kit.features.forward_returns`)
    and their ``label_end = t + h`` ``(T,)``."""
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    fa = _features.forward_returns(close, (int(horizon),))
    return pd.DataFrame(fa.values[:, :, 0], index=close.index, columns=close.columns), np.arange(len(close)) + int(horizon)


def ltr_features(close: pd.DataFrame, vol_span: int = 60) -> _features.FeatureArray:
    """The learning-to-rank inputs of Poh et al. (2021) on daily closes, ``(T, N, 24)``.

    - the 8 DMN inputs (:func:`kit.features.feature_set` ``'dmn'``): volatility-normalised returns
      over 1, 21, 63, 126, 252 days (so over 3, 6 and 12 months among them) and the normalised MACD
      of Baz et al. (2015) for (8, 24), (16, 48), (32, 96);
    - raw returns over 63, 126, 252 days (``ret_63`` ...);
    - the three MACD indicators lagged by 21, 63, 126 and 252 days (``macd_8_24_lag21`` ...: "the
      normalised MACD ... over the past 1, 3, 6 and 12 months");
    - the Baz composite signal ``mean_k phi(Y_k)`` (``macd_composite``).

    Every value at t uses prices up to t (lags look back). NaN until enough history exists.
    """
    dmn = _features.feature_set("dmn", close)
    vals = [dmn.values]
    names = list(dmn.names)
    c = close.to_numpy(dtype="float64")
    for k in (63, 126, 252):
        r = np.full(c.shape, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            r[k:] = c[k:] / c[:-k] - 1.0
        vals.append(r[:, :, None])
        names.append(f"ret_{k}")
    macd_names = [n for n in dmn.names if n.startswith("macd_")]
    for lag in (21, 63, 126, 252):
        for n in macd_names:
            x = dmn.values[:, :, dmn.names.index(n)]
            lagged = np.full(x.shape, np.nan)
            lagged[lag:] = x[:-lag]
            vals.append(lagged[:, :, None])
            names.append(f"{n}_lag{lag}")
    y = dmn.values[:, :, [dmn.names.index(n) for n in macd_names]]
    vals.append((y * np.exp(-(y**2) / 4.0) / 0.89).mean(axis=2, keepdims=True))
    names.append("macd_composite")
    return _features.FeatureArray(np.concatenate(vals, axis=2), names, close.index, close.columns)


# ------------------------------------------------------------------------------------------------
# folds
# ------------------------------------------------------------------------------------------------


def fold_rows(ds: TabularDataset, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of one fold: training, validation and test.

    Training rows: date in ``[split.train[0], split.val[0])``, finite ``y`` and
    ``label_end < split.val[0]``. Validation rows: date in ``[split.val[0], split.test[0])``,
    finite ``y`` and ``label_end < split.test[0]``. Test rows: date in ``split.test`` (``y`` may be
    NaN: predictions only). Each is sorted by date then symbol.
    """
    d, le, fy = ds.date, ds.label_end, np.isfinite(ds.y)
    train = (d >= split.train[0]) & (d < split.val[0]) & fy & (le < split.val[0])
    val = (d >= split.val[0]) & (d < split.test[0]) & fy & (le < split.test[0])
    test = (d >= split.test[0]) & (d < split.test[1])
    return np.flatnonzero(train), np.flatnonzero(val), np.flatnonzero(test)


def count_leakage(ds: TabularDataset, split: Split, train: np.ndarray, val: np.ndarray) -> int:
    """Rows whose label reaches a later block: training rows with ``label_end >= val start`` or
    ``>= test start``, validation rows with ``label_end >= test start``, and any training or
    validation row dated inside the test block. A correct fold gives 0."""
    bad = int((ds.label_end[train] >= split.val[0]).sum() + (ds.label_end[val] >= split.test[0]).sum())
    bad += int((ds.date[np.r_[train, val]] >= split.test[0]).sum())
    return bad


# ------------------------------------------------------------------------------------------------
# devices
# ------------------------------------------------------------------------------------------------


def cuda_available() -> bool:
    """True when the installed XGBoost was built with CUDA and a CUDA device is visible (torch)."""
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA", False):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch is a kit dependency
        return False


def xgb_device(device: str = "auto") -> dict:
    """XGBoost device parameters: ``{"tree_method": "hist", "device": "cuda" | "cpu"}``.

    ``"auto"`` picks ``cuda`` when :func:`cuda_available`, else ``cpu``. (XGBoost >= 2 spells the
    seed's ``tree_method="gpu_hist"`` as ``tree_method="hist", device="cuda"``.) LightGBM always
    runs on the CPU here (its GPU needs a custom build).

    Raises
    ------
    ValueError
        ``device`` unknown, or ``"cuda"`` requested where it is not available.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not cuda_available():
        raise ValueError("device='cuda' requested but XGBoost has no CUDA build or no CUDA device is visible")
    use = device == "cuda" or (device == "auto" and cuda_available())
    return {"tree_method": "hist", "device": "cuda" if use else "cpu"}


# ------------------------------------------------------------------------------------------------
# the dollar-profit objective (seed 004)
# ------------------------------------------------------------------------------------------------


def dollar_profit(score: np.ndarray, returns: np.ndarray) -> float:
    """Mean profit per unit notional of positions ``tanh(score)``: ``mean(tanh(s) * r)``."""
    return float(np.mean(np.tanh(np.asarray(score, dtype="float64")) * np.asarray(returns, dtype="float64")))


def dollar_profit_grad_hess(score: np.ndarray, returns: np.ndarray, hessian_floor: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and (floored) hessian of the seed-004 "dollar profit" loss per row.

    The seed maximises profit = position x return. With ``position = s`` (the raw score) the loss
    ``-s r`` is linear: hessian 0, and the Newton step of gradient boosting (leaf value
    ``-sum g / sum h``) is undefined. The smooth surrogate used here is ``position = tanh(s)``:

    ``L(s) = -tanh(s) r``,
    ``g = dL/ds = -r (1 - tanh^2 s)``,
    ``h = d^2L/ds^2 = 2 r tanh(s) (1 - tanh^2 s)``.

    ``h`` is negative wherever the position already agrees with the return's sign (the loss is
    concave there), which would make Newton steps ascend; the hessian passed to the booster is
    ``max(h, hessian_floor)`` (a positive floor, i.e. a damped gradient step of size
    ``1 / hessian_floor`` where the curvature is not positive). The gradient is exact (tested
    against finite differences). ``returns`` should be of unit scale (the walk-forward divides them
    by their training-block standard deviation; a positive rescaling leaves the minimiser unchanged)
    so that the floor and the learning rate mean the same thing for any asset.

    Parameters
    ----------
    score : (R,) raw scores; returns : (R,) returns (or scaled returns) of the rows.
    hessian_floor : > 0.

    Returns
    -------
    (grad, hess): two (R,) float64 arrays; ``hess >= hessian_floor``.

    Raises
    ------
    ValueError
        ``hessian_floor <= 0`` or shapes differ.
    """
    if not hessian_floor > 0:
        raise ValueError(f"hessian_floor must be > 0, got {hessian_floor!r}")
    s = np.asarray(score, dtype="float64")
    r = np.asarray(returns, dtype="float64")
    if s.shape != r.shape:
        raise ValueError(f"score shape {s.shape} != returns shape {r.shape}")
    t = np.tanh(s)
    sech2 = 1.0 - t * t
    grad = -r * sech2
    hess = 2.0 * r * t * sech2
    return grad, np.maximum(hess, hessian_floor)


def lgb_dollar_profit_objective(hessian_floor: float = 0.1):
    """The dollar-profit objective as a LightGBM callable ``(preds, dataset) -> (grad, hess)``;
    the dataset's label holds the (scaled) returns. See :func:`dollar_profit_grad_hess`."""

    def objective(preds, dataset):
        return dollar_profit_grad_hess(preds, dataset.get_label(), hessian_floor)

    return objective


def xgb_dollar_profit_objective(hessian_floor: float = 0.1):
    """The dollar-profit objective as an XGBoost callable ``(predt, dmatrix) -> (grad, hess)``;
    the DMatrix label holds the (scaled) returns. See :func:`dollar_profit_grad_hess`."""

    def objective(predt, dmatrix):
        return dollar_profit_grad_hess(predt, dmatrix.get_label(), hessian_floor)

    return objective


# ------------------------------------------------------------------------------------------------
# positions
# ------------------------------------------------------------------------------------------------


def positions_from_probability(p) -> np.ndarray:
    """``2 p - 1``: a probability of an up move to a position in [-1, 1].

    Raises
    ------
    ValueError
        A probability outside [0, 1].
    """
    p = np.asarray(p, dtype="float64")
    if (p[np.isfinite(p)] < 0).any() or (p[np.isfinite(p)] > 1).any():
        raise ValueError(f"probabilities must lie in [0, 1]; got range [{np.nanmin(p)}, {np.nanmax(p)}]")
    return 2.0 * p - 1.0


def positions_from_prediction(pred, scale: float) -> np.ndarray:
    """``tanh(pred / scale)``: a predicted return (or normalised return) to a position in (-1, 1).

    Raises
    ------
    ValueError
        ``scale`` not positive and finite.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return np.tanh(np.asarray(pred, dtype="float64") / scale)


# ------------------------------------------------------------------------------------------------
# fitting one fold
# ------------------------------------------------------------------------------------------------


def _n_threads(n_threads: int | None) -> int:
    return int(n_threads) if n_threads else max(1, min(2, os.cpu_count() or 1))


def _lgb_params(task: str, seed: int, n_threads: int, params: dict | None) -> dict:
    base = {
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 100,
        "lambda_l2": 1.0,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "verbose": -1,
        "seed": int(seed),
        "num_threads": int(n_threads),
        "deterministic": True,
        "force_row_wise": True,
    }
    if task == "classification":
        base.update(objective="binary", metric="binary_logloss")
    elif task == "regression":
        base.update(objective="regression", metric="l2")
    elif task == "dollar_profit":
        base.update(metric="None")
    elif task == "rank":
        base.update(objective="lambdarank", metric="ndcg")
    return {**base, **(params or {})}


def _xgb_params(task: str, seed: int, n_threads: int, device: str, params: dict | None) -> dict:
    base = {
        "eta": 0.05,
        "max_depth": 4,
        "min_child_weight": 10.0,
        "lambda": 1.0,
        "subsample": 1.0,
        "seed": int(seed),
        "nthread": int(n_threads),
        **xgb_device(device),
    }
    if task == "classification":
        base.update(objective="binary:logistic", eval_metric="logloss")
    elif task == "regression":
        base.update(objective="reg:squarederror", eval_metric="rmse")
    elif task == "dollar_profit":
        base.update(base_score=0.0, disable_default_eval_metric=1)
    elif task == "rank":
        base.update(objective="rank:ndcg", eval_metric="ndcg")
    return {**base, **(params or {})}


@dataclass
class _Fitted:
    predict: object
    best_iteration: int
    best_score: float


def _fit_lightgbm(task, Xtr, ytr, Xva, yva, gtr, gva, *, seed, n_threads, params, n_estimators, early_stopping_rounds, hessian_floor) -> _Fitted:
    import lightgbm as lgb

    p = _lgb_params(task, seed, n_threads, params)
    feval = None
    if task == "dollar_profit":
        p["objective"] = lgb_dollar_profit_objective(hessian_floor)

        def feval(preds, data):
            return "dollar_profit", dollar_profit(preds, data.get_label()), True

    if task == "rank":
        full = int(max(gtr.max(), gva.max()))
        p.setdefault("lambdarank_truncation_level", full)  # every pair of the list, not only the top 30
        p.setdefault("eval_at", [full])  # NDCG of the whole cross-section
    rank = task == "rank"
    dtr = lgb.Dataset(Xtr, ytr, group=gtr if rank else None, free_raw_data=True)
    dva = lgb.Dataset(Xva, yva, group=gva if rank else None, reference=dtr)
    booster = lgb.train(
        p,
        dtr,
        num_boost_round=int(n_estimators),
        valid_sets=[dva],
        valid_names=["val"],
        feval=feval,
        callbacks=[lgb.early_stopping(int(early_stopping_rounds), first_metric_only=True, verbose=False)],
    )
    best = int(booster.best_iteration) or booster.current_iteration()
    score = float(next(iter(booster.best_score["val"].values()))) if booster.best_score.get("val") else float("nan")
    return _Fitted(lambda X: booster.predict(X, num_iteration=best), best, score)


def _fit_xgboost(task, Xtr, ytr, Xva, yva, gtr, gva, *, seed, n_threads, params, n_estimators, early_stopping_rounds, hessian_floor, device) -> _Fitted:
    import xgboost as xgb

    p = _xgb_params(task, seed, n_threads, device, params)
    dtr = xgb.DMatrix(Xtr, label=ytr, nthread=int(n_threads))
    dva = xgb.DMatrix(Xva, label=yva, nthread=int(n_threads))
    if task == "rank":
        dtr.set_group(gtr)
        dva.set_group(gva)
    obj = metric = None
    if task == "dollar_profit":
        obj = xgb_dollar_profit_objective(hessian_floor)

        def metric(predt, dmat):
            return "neg_dollar_profit", -dollar_profit(predt, dmat.get_label())

    booster = xgb.train(
        p,
        dtr,
        num_boost_round=int(n_estimators),
        evals=[(dva, "val")],
        obj=obj,
        custom_metric=metric,
        early_stopping_rounds=int(early_stopping_rounds),
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    margin = task == "dollar_profit"

    def predict(X):
        return booster.predict(xgb.DMatrix(X, nthread=int(n_threads)), iteration_range=(0, best + 1), output_margin=margin)

    return _Fitted(predict, best + 1, float(booster.best_score))


# ------------------------------------------------------------------------------------------------
# walk-forward
# ------------------------------------------------------------------------------------------------


@dataclass
class FoldPredictions:
    """One fold's validation and test positions as rows ``(date position, symbol position)``.

    The stacking meta-learner (:func:`walk_forward_stack`) is fitted on ``val_*`` only. Any model
    can provide these (for an LSTM of :mod:`kit.training`: its positions on the fold's validation
    and test dates, via :meth:`from_arrays`).
    """

    fold: int
    val_date: np.ndarray
    val_symbol: np.ndarray
    val_positions: np.ndarray
    test_date: np.ndarray
    test_symbol: np.ndarray
    test_positions: np.ndarray

    @classmethod
    def from_arrays(cls, fold: int, val_positions: np.ndarray, test_positions: np.ndarray) -> FoldPredictions:
        """From two ``(T, N)`` arrays, NaN outside the fold's validation (resp. test) block."""
        v = np.asarray(val_positions, dtype="float64")
        t = np.asarray(test_positions, dtype="float64")
        vd, vs = np.nonzero(np.isfinite(v))
        td, ts = np.nonzero(np.isfinite(t))
        return cls(int(fold), vd, vs, v[vd, vs], td, ts, t[td, ts])


@dataclass
class TreeWalkForwardResult:
    """Out-of-sample results of a tree walk-forward.

    Attributes
    ----------
    scores : (T, N) DataFrame of model outputs on test blocks (probability of an up move,
        predicted target, raw score, or ranking score), NaN elsewhere.
    positions : (T, N) DataFrame of positions in [-1, 1] by the documented rule (ranker and
        cross-sectional regressor: NaN; use :attr:`weights`).
    weights : (T, N) decile long-short weights (ranker / cross-sectional regressor only).
    folds : one row per fold: dates, rows, best iteration, validation score, seconds, leakage.
    fold_predictions : list of :class:`FoldPredictions` (validation and test positions or scores).
    config : the settings.
    """

    scores: pd.DataFrame
    positions: pd.DataFrame
    folds: pd.DataFrame
    fold_predictions: list
    config: dict
    weights: pd.DataFrame | None = None
    feature_names: list = field(default_factory=list)


def _walk(ds: TabularDataset, splits, fit, task: str, progress: bool):
    T, N = len(ds.index), len(ds.columns)
    scores = np.full((T, N), np.nan)
    positions = np.full((T, N), np.nan)
    logs, preds = [], []
    for split in splits:
        tr, va, te = fold_rows(ds, split)
        leak = count_leakage(ds, split, tr, va)
        if leak:
            raise LeakageError(f"fold {split.fold}: {leak} rows reach a later block")
        if len(tr) == 0 or len(va) == 0:
            raise ValueError(f"fold {split.fold}: {len(tr)} training and {len(va)} validation rows; need both")
        t0 = time.perf_counter()
        y_tr = ds.label[tr] if task == "rank" else ds.y[tr]
        y_va = ds.label[va] if task == "rank" else ds.y[va]
        fitted = fit(ds.X[tr], y_tr, ds.X[va], y_va, ds.groups(tr), ds.groups(va), fold=split.fold)
        p_va = np.asarray(fitted.predict(ds.X[va]), dtype="float64")
        p_te = np.asarray(fitted.predict(ds.X[te]), dtype="float64") if len(te) else np.empty(0)
        pos_va, pos_te = _to_positions(task, p_va, p_te)
        scores[ds.date[te], ds.symbol[te]] = p_te
        if pos_te is not None:
            positions[ds.date[te], ds.symbol[te]] = pos_te
        preds.append(
            FoldPredictions(
                split.fold, ds.date[va], ds.symbol[va], pos_va if pos_va is not None else p_va,
                ds.date[te], ds.symbol[te], pos_te if pos_te is not None else p_te,
            )
        )
        info = split.describe(ds.index)
        info.update(
            train_rows=int(len(tr)),
            val_rows=int(len(va)),
            test_rows=int(len(te)),
            leakage_rows=leak,
            best_iteration=fitted.best_iteration,
            val_metric=fitted.best_score,
            seconds=round(time.perf_counter() - t0, 3),
        )
        logs.append(info)
        if progress:
            print(f"fold {split.fold}: {info['test_start']}..{info['test_end']} best_iteration={fitted.best_iteration} {info['seconds']}s")
    return scores, positions, pd.DataFrame(logs), preds


def _to_positions(task: str, p_va: np.ndarray, p_te: np.ndarray):
    if task == "classification":
        return positions_from_probability(p_va), positions_from_probability(p_te)
    if task == "regression":
        scale = float(np.sqrt(np.mean(p_va**2)))  # root mean square of the validation predictions
        if not scale > 0:
            scale = 1.0  # every validation prediction is exactly 0: positions 0 whatever the scale
        return positions_from_prediction(p_va, scale), positions_from_prediction(p_te, scale)
    if task == "dollar_profit":
        return np.tanh(p_va), np.tanh(p_te)
    return None, None  # rank / cross-sectional regression: scores only


def _fitter(library: str, task: str, *, seed, n_threads, params, n_estimators, early_stopping_rounds, hessian_floor, device):
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")

    def fit(Xtr, ytr, Xva, yva, gtr, gva, fold):
        kw = dict(
            seed=seed + fold, n_threads=n_threads, params=params, n_estimators=n_estimators,
            early_stopping_rounds=early_stopping_rounds, hessian_floor=hessian_floor,
        )
        if task == "dollar_profit":  # unit-scale returns: divide by the training block's std
            s = float(np.std(ytr))
            s = s if s > 0 else 1.0
            ytr, yva = ytr / s, yva / s
        if library == "lightgbm":
            return _fit_lightgbm(task, Xtr, ytr, Xva, yva, gtr, gva, **kw)
        return _fit_xgboost(task, Xtr, ytr, Xva, yva, gtr, gva, device=device, **kw)

    return fit


def walk_forward_trees(
    features,
    close: pd.DataFrame,
    *,
    task: str = "classification",
    library: str = "lightgbm",
    horizon: int = 1,
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    train_start=None,
    membership=None,
    normalise_target: bool = True,
    params: dict | None = None,
    n_estimators: int = 500,
    early_stopping_rounds: int = 50,
    hessian_floor: float = 0.1,
    seed: int = 0,
    n_threads: int | None = None,
    device: str = "auto",
    vol_span: int = 60,
    progress: bool = False,
) -> TreeWalkForwardResult:
    """Walk-forward gradient-boosted trees for next-day / next-week direction or return (seed 004).

    One pooled model per fold over every (date, symbol) row with finite features; expanding
    training window, validation = its last ``val_fraction`` (early stopping), test = the next
    ``test_size`` trading days (:func:`kit.training.walk_forward_splits`), embargo = the label
    horizon (:func:`fold_rows`). The target of a row at t is ``r = close_{t+h} / close_t - 1``:

    - ``classification``: label ``1{r > 0}`` (a zero return counts as down); LightGBM ``binary``
      or XGBoost ``binary:logistic``, early-stopped on validation log-loss;
      score = P(up), position = ``2 P - 1``;
    - ``regression``: label ``r / (sigma_t sqrt(h))`` with the daily ex-ante volatility
      ``sigma_t`` (span ``vol_span``; pooled assets on one scale) or ``r`` if
      ``normalise_target=False``; L2 loss, early-stopped on validation L2/RMSE;
      position = ``tanh(pred / scale)``, ``scale`` = RMS of the validation predictions;
    - ``dollar_profit``: seed 004's objective (:func:`dollar_profit_grad_hess`, both libraries) on
      ``r`` divided by its training-block std; early-stopped on validation mean profit;
      position = ``tanh(score)``.

    Parameters
    ----------
    features : :class:`kit.features.FeatureArray` ``(T, N, F)`` (e.g. ``feature_set('dmn', close)``
        or ``'ldtm'``), labelled like ``close``.
    close : (T, N) adjusted closes.
    task : one of :data:`TASKS`; library : ``"lightgbm"`` or ``"xgboost"``.
    horizon : label horizon in trading days (1 = next day, 5 = next week).
    test_start, test_end, test_size, val_fraction, train_start : as
        :func:`kit.training.walk_forward_splits`.
    membership : optional (T, N) bool universe; rows outside it are neither trained nor scored.
    params : overrides of the library parameters (see ``_lgb_params`` / ``_xgb_params``).
    n_estimators, early_stopping_rounds : boosting rounds and patience on validation.
    hessian_floor : of the dollar-profit objective.
    seed : fold k uses ``seed + k``. n_threads : fixed thread count (default min(2, cpus)).
    device : XGBoost device (:func:`xgb_device`); LightGBM is CPU.

    Returns
    -------
    :class:`TreeWalkForwardResult` with ``scores`` and ``positions`` ``(T, N)`` on test blocks.

    Raises
    ------
    ValueError
        Unknown task/library/device, mismatched labels, a fold without training or validation rows.
    LeakageError
        A fold's rows reach a later block (cannot happen; checked anyway).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    values, names = _as_values(features)
    if values.shape[:2] != close.shape:
        raise ValueError(f"features are {values.shape[:2]} (T, N), close {close.shape}")
    r, label_end = horizon_returns(close, horizon)
    y = r.to_numpy()
    if task == "classification":
        y = np.where(np.isfinite(y), (y > 0).astype("float64"), np.nan)
    elif task == "regression" and normalise_target:
        vol = _features.ex_ante_vol(_features.daily_returns(close), span=vol_span, annualise=False).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(vol > 0, y / (vol * math.sqrt(horizon)), np.nan)
    ds = tabular_dataset(features, y, label_end, close.index, close.columns, membership=membership)
    nt = _n_threads(n_threads)
    splits = walk_forward_splits(close.index, test_start, test_size, test_end, val_fraction, horizon=1, train_start=train_start)
    fit = _fitter(
        library, task, seed=seed, n_threads=nt, params=params, n_estimators=n_estimators,
        early_stopping_rounds=early_stopping_rounds, hessian_floor=hessian_floor, device=device,
    )
    scores, positions, logs, preds = _walk(ds, splits, fit, task, progress)
    config = dict(
        task=task, library=library, horizon=horizon, test_start=str(test_start), test_size=test_size,
        val_fraction=val_fraction, normalise_target=normalise_target, params=params or {}, n_estimators=n_estimators,
        early_stopping_rounds=early_stopping_rounds, hessian_floor=hessian_floor, seed=seed, n_threads=nt,
        device=xgb_device(device)["device"] if library == "xgboost" else "cpu",
    )
    lab = dict(index=close.index, columns=close.columns)
    return TreeWalkForwardResult(pd.DataFrame(scores, **lab), pd.DataFrame(positions, **lab), logs, preds, config, None, names)


def walk_forward_ranker(
    close: pd.DataFrame,
    *,
    test_start,
    objective: str = "lambdarank",
    features=None,
    rebalance=None,
    membership=None,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    train_start=None,
    n_quantiles: int = 10,
    vol_scale: bool = False,
    params: dict | None = None,
    n_estimators: int = 500,
    early_stopping_rounds: int = 50,
    seed: int = 0,
    n_threads: int | None = None,
    progress: bool = False,
) -> TreeWalkForwardResult:
    """Learning to rank for cross-sectional momentum (Poh, Lim, Zohren & Roberts, 2021), walk-forward.

    On each rebalance date (month ends by default) every member with finite features is a row; the
    query group is the date; the relevance label is the decile (0..9) of the asset's *next-period*
    return ``close_{t_{k+1}} / close_{t_k} - 1`` within that date's cross-section
    (:func:`period_returns`, :func:`tabular_dataset`). Models:

    - ``objective="lambdarank"``: LightGBM LambdaMART, NDCG over the whole cross-section (all pairs:
      ``lambdarank_truncation_level`` = group size), early-stopped on validation NDCG;
    - ``objective="regression"``: the pointwise baseline, LightGBM L2 regression of the
      next-period return on the same rows and features ("regress-then-rank"), early-stopped on
      validation L2; so the value of ranking is measured with everything else equal.

    Folds retrain every ``test_size`` trading days (yearly by default) on an expanding window;
    validation is the last ``val_fraction`` of it; rows whose next-period return ends at or after
    a block's start are embargoed from the earlier block. Test-block scores are turned into
    decile long-short weights (:func:`kit.cross_sectional.decile_long_short_weights`, equal weight
    or inverse volatility within legs) held between rebalances.

    Paper: see :data:`POH_2021_HEADLINE` (their headline numbers, universe and period beside ours).

    Parameters
    ----------
    close : (T, N) adjusted closes.
    features : FeatureArray ``(T, N, F)``; default :func:`ltr_features` (Poh et al.'s inputs).
    rebalance : rebalance dates; default month ends of ``close.index``.
    membership : optional (T, N) bool point-in-time universe (also needs a price on the date).

    Returns
    -------
    :class:`TreeWalkForwardResult`: ``scores`` on test rebalance dates, ``weights`` (T, N) decile
    long-short weights (0 before the first test rebalance), ``positions`` all NaN.

    Raises
    ------
    ValueError
        Unknown objective, a fold without training or validation rows.
    """
    if objective not in ("lambdarank", "regression"):
        raise ValueError(f"objective must be 'lambdarank' or 'regression', got {objective!r}")
    feats = ltr_features(close) if features is None else features
    values, _ = _as_values(feats)
    if values.shape[:2] != close.shape:
        raise ValueError(f"features are {values.shape[:2]} (T, N), close {close.shape}")
    reb = _cs.month_end_dates(close.index) if rebalance is None else pd.DatetimeIndex(rebalance)
    reb_pos = _cs.rebalance_positions(close.index, reb)
    target, label_end = period_returns(close, reb)
    member = close.notna().to_numpy()
    if membership is not None:
        m = np.asarray(membership, dtype=bool)
        if m.shape != close.shape:
            raise ValueError(f"membership has shape {m.shape}, close {close.shape}")
        member = member & m
    ds = tabular_dataset(feats, target, label_end, close.index, close.columns, dates=reb_pos, membership=member, n_quantiles=n_quantiles)
    nt = _n_threads(n_threads)
    splits = walk_forward_splits(close.index, test_start, test_size, test_end, val_fraction, horizon=1, train_start=train_start)
    task = "rank" if objective == "lambdarank" else "regression"
    fit = _fitter("lightgbm", task, seed=seed, n_threads=nt, params=params, n_estimators=n_estimators,
                  early_stopping_rounds=early_stopping_rounds, hessian_floor=0.1, device="cpu")
    # the regression baseline must not be turned into tanh positions: score only
    scores, _, logs, preds = _walk(ds, splits, fit, "rank" if task == "rank" else "cs_regression", progress)
    lab = dict(index=close.index, columns=close.columns)
    scores_df = pd.DataFrame(scores, **lab)
    test_reb = reb[(reb >= close.index[splits[0].test[0]]) & (reb <= close.index[splits[-1].test[1] - 1])]
    vol = _features.ex_ante_vol(_features.daily_returns(close), annualise=False) if vol_scale else None
    weights = _cs.decile_long_short_weights(scores_df, member, test_reb, n_quantiles, vol_scale, vol)
    config = dict(
        objective=objective, library="lightgbm", n_quantiles=n_quantiles, vol_scale=vol_scale, test_start=str(test_start),
        test_size=test_size, val_fraction=val_fraction, params=params or {}, n_estimators=n_estimators,
        early_stopping_rounds=early_stopping_rounds, seed=seed, n_threads=nt, n_rebalance=len(reb_pos),
    )
    return TreeWalkForwardResult(scores_df, pd.DataFrame(np.nan, **lab), logs, preds, config, weights, _as_values(feats)[1])


# ------------------------------------------------------------------------------------------------
# stacking (seed 004: combine tree and LSTM predictions)
# ------------------------------------------------------------------------------------------------


def fit_stacker(val_positions: np.ndarray, val_returns: np.ndarray, method: str = "nnls") -> np.ndarray:
    """Convex weights ``(K,)`` (non-negative, summing to 1) combining K members' positions, fitted
    on validation rows only.

    - ``nnls``: non-negative least squares of the validation returns on the members' positions
      (``scipy.optimize.nnls``), rescaled to sum to 1 (equal weights if all are 0);
    - ``sharpe``: :func:`kit.models.ensemble_weights` ``method="stacked"`` (softmax weights
      maximising the Sharpe ratio of the combined positions' captured returns).

    A convex combination of positions in [-1, 1] stays in [-1, 1].

    Parameters
    ----------
    val_positions : (K, R) positions of K members on R validation rows (finite).
    val_returns : (R,) the rows' forward returns (finite).

    Raises
    ------
    ValueError
        Unknown method, shapes disagree, non-finite input, or fewer than 2 rows.
    """
    P = np.asarray(val_positions, dtype="float64")
    y = np.asarray(val_returns, dtype="float64")
    if P.ndim != 2 or y.shape != (P.shape[1],):
        raise ValueError(f"val_positions must be (K, R) and val_returns (R,), got {P.shape} and {y.shape}")
    if not (np.isfinite(P).all() and np.isfinite(y).all()):
        raise ValueError("val_positions and val_returns must be finite (select the common rows first)")
    if P.shape[1] < 2:
        raise ValueError(f"need at least 2 validation rows, got {P.shape[1]}")
    if method == "nnls":
        from scipy.optimize import nnls

        w, _ = nnls(P.T, y)
        return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    if method == "sharpe":
        from .models import ensemble_weights

        return np.asarray(ensemble_weights(method="stacked", val_positions=P, val_target=y), dtype="float64")
    raise ValueError(f"method must be 'nnls' or 'sharpe', got {method!r}")


def walk_forward_stack(members: dict, returns: pd.DataFrame, method: str = "nnls") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack members' walk-forward positions fold by fold (seed 004's tree + LSTM combination).

    For each fold k the meta-learner (:func:`fit_stacker`) is fitted on the rows of fold k's
    *validation* block where every member has a position and ``returns`` is finite, then applied
    to the rows of fold k's test block where every member has a position. Test-block returns are
    never read.

    Parameters
    ----------
    members : name -> list of :class:`FoldPredictions` (same folds for every member, e.g.
        ``result.fold_predictions`` of :func:`walk_forward_trees` and ``FoldPredictions.from_arrays``
        for an LSTM's validation and test positions).
    returns : (T, N) forward returns the positions earn (e.g. :func:`horizon_returns`), labels of
        the members' date and symbol positions.
    method : ``"nnls"`` or ``"sharpe"``.

    Returns
    -------
    (positions, weights): ``(T, N)`` DataFrame of combined test positions (NaN elsewhere) and a
    DataFrame with one row per fold of the members' weights and the number of validation rows.

    Raises
    ------
    ValueError
        Members with different folds, or fewer than 2 members.
    """
    names = list(members)
    if len(names) < 2:
        raise ValueError(f"need at least 2 members to stack, got {names}")
    folds = [[fp.fold for fp in members[n]] for n in names]
    if any(f != folds[0] for f in folds):
        raise ValueError(f"members have different folds: {dict(zip(names, folds, strict=True))}")
    R = returns.to_numpy(dtype="float64")
    T, N = R.shape
    out = np.full((T, N), np.nan)
    rows = []
    for k in range(len(folds[0])):
        fps = [members[n][k] for n in names]
        val = np.stack([_grid(fp.val_date, fp.val_symbol, fp.val_positions, (T, N)) for fp in fps])
        common = np.isfinite(val).all(axis=0) & np.isfinite(R)
        di, si = np.nonzero(common)
        w = fit_stacker(val[:, di, si], R[di, si], method)
        test = np.stack([_grid(fp.test_date, fp.test_symbol, fp.test_positions, (T, N)) for fp in fps])
        ok = np.isfinite(test).all(axis=0)
        out[ok] = np.tensordot(w, np.where(ok, test, 0.0), axes=1)[ok]
        rows.append({"fold": fps[0].fold, **{n: float(x) for n, x in zip(names, w, strict=True)}, "val_rows": int(len(di))})
    return pd.DataFrame(out, index=returns.index, columns=returns.columns), pd.DataFrame(rows)


def _grid(d, s, v, shape) -> np.ndarray:
    g = np.full(shape, np.nan)
    g[d, s] = v
    return g
