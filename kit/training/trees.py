"""Walk-forward fitting of the gradient-boosted tree models (:mod:`kit.models.trees`): tabular
datasets without look-ahead, the daily direction / return / dollar-profit models (seed 004), the
LambdaMART ranker of Poh et al. (2021) with its pointwise baseline, and the stacking of a tree with
an LSTM (seed 004's combination).

Rows and look-ahead
-------------------
A :class:`TabularDataset` holds one row per (date, symbol) with features known at the close of the
row's date t (the ``(T, N, F)`` arrays of :mod:`kit.features`), a target that uses prices after t
only, and ``label_end``: the date position of the last price the target uses (``t + h`` for an h-day
return, the next rebalance date for a next-period return). Walk-forward folds come from
:func:`kit.training.splits.walk_forward_splits`; :func:`fold_rows` keeps the rows of the fold's
training block whose ``label_end`` is before the validation block and the rows of its validation
block whose ``label_end`` is before the test block: an embargo equal to each row's own label
horizon. :func:`kit.training.splits.count_leakage` (with ``label_end``) counts violations, zero by
construction; every walk-forward checks it and raises :class:`LeakageError` otherwise.

Results are :class:`kit.training.walk_forward.WalkForwardResult` like every other model: stitched
test-block ``positions`` ``(T_test, N)`` in [-1, 1] (the position rules of :mod:`kit.models.trees`;
a ranker's positions are its quantile legs, +1 / -1 / 0), ``scores`` (raw outputs), one ``folds``
row per fold (with its checkpoint when ``checkpoint_dir`` is given), the per-iteration validation
metric in ``history``, and ``fold_predictions`` for stacking.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions import VOL_SPAN
from ..data import align_membership
from ..features import (
    FeatureArray,
    daily_returns,
    ex_ante_vol,
    horizon_target,
    ltr_features,
    period_returns,
    quantile_buckets,
    quantile_legs,
    rebalance_dates,
    rebalance_positions,
    tree_features,
)
from ..models import ensemble_weights, save_stack, save_tree
from ..models.trees import (
    RANK_TASKS,
    TREE_MODELS,
    TreeConfig,
    TreeModel,
    dollar_profit,
    lgb_dollar_profit_objective,
    lgb_params,
    n_threads,
    positions_from_prediction,
    positions_from_probability,
    xgb_device,
    xgb_dollar_profit_objective,
    xgb_params,
)
from .results import FoldPredictions, WalkForwardResult
from .splits import LeakageError, Split, count_leakage, walk_forward_splits
from .tasks import Task, resolve_runner

__all__ = [
    "TabularDataset",
    "tabular_dataset",
    "fold_rows",
    "fold_leakage",
    "fit_tree",
    "TreeFoldArgs",
    "TreeFoldFit",
    "fit_tree_fold",
    "walk_forward_trees",
    "walk_forward_ranker",
    "fit_stacker",
    "walk_forward_stack",
    "walk_forward_tree_lstm_stack",
    "walk_forward_tree_model",
    "POH_2021",
]

POH_2021 = (
    "Poh, Lim, Zohren & Roberts (2021), 'Building Cross-Sectional Systematic Strategies by Learning to Rank', "
    "Journal of Financial Data Science 3(2), arXiv:2012.07149. Checked against the paper's abstract: learning-to-rank "
    "models give 'approximately threefold boosting of Sharpe Ratios compared to traditional approaches' for "
    "cross-sectional momentum decile portfolios. Not checked (the results table could not be read here): the exact "
    "Sharpe ratios per model, the universe (reported by secondary sources as CRSP US stocks) and the test period."
)
"""What the kit can say about the paper's headline numbers, and what it could not check."""


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

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, N)`` of the date and symbol axes."""
        return len(self.index), len(self.columns)

    def groups(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Query-group sizes (rows per date, in date order) of ``rows`` (sorted integer positions;
        default all rows), as LightGBM's ``group`` wants them.

        Raises
        ------
        ValueError
            ``rows`` not sorted by date.
        """
        d = self.date if rows is None else self.date[rows]
        if len(d) and (np.diff(d) < 0).any():
            raise ValueError("rows must be sorted by date to form groups")
        _, counts = np.unique(d, return_counts=True)
        return counts.astype(np.int64)

    def grid(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``(T, N)`` float64 array holding ``values`` at the ``rows``' (date, symbol), NaN elsewhere."""
        g = np.full(self.shape, np.nan)
        g[self.date[rows], self.symbol[rows]] = values
        return g

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
    if isinstance(features, FeatureArray):
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
        among the dataset's rows with a finite ``y`` (:func:`kit.features.quantile_buckets`) minus
        1, so 0 .. n_quantiles - 1 (LambdaMART relevance; deciles for 10).

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
        q = quantile_buckets(pd.DataFrame(grid), None, n_quantiles).to_numpy()[di, si]
        label = np.where(np.isfinite(q), q - 1, -1).astype(np.int64)
    return TabularDataset(
        values[di, si].astype(np.float32), y, label, di.astype(np.int64), si.astype(np.int64), le[di, si], names,
        pd.DatetimeIndex(index), pd.Index(columns),
    )


# ------------------------------------------------------------------------------------------------
# folds
# ------------------------------------------------------------------------------------------------


def fold_rows(ds: TabularDataset, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of one fold: training, validation and test.

    Training rows: date in the split's training block ``[train[0], train[1])``, finite ``y`` and
    ``label_end < val[0]``. Validation rows: date in ``[val[0], val[1])``, finite ``y`` and
    ``label_end < test[0]``. Test rows: date in the test block (``y`` may be NaN: predictions
    only). Each is sorted by date then symbol.
    """
    d, le, fy = ds.date, ds.label_end, np.isfinite(ds.y)
    train = (d >= split.train[0]) & (d < split.train[1]) & fy & (le < split.val[0])
    val = (d >= split.val[0]) & (d < split.val[1]) & fy & (le < split.test[0])
    test = (d >= split.test[0]) & (d < split.test[1])
    return np.flatnonzero(train), np.flatnonzero(val), np.flatnonzero(test)


def fold_leakage(ds: TabularDataset, split: Split, train: np.ndarray, val: np.ndarray) -> int:
    """Rows of ``train`` and ``val`` whose label reaches a later block:
    :func:`kit.training.splits.count_leakage` on the ``(T, N)`` mask of the rows used with the
    rows' own ``label_end``, plus any used row dated outside its block. A correct fold gives 0."""
    used = np.zeros(ds.shape, bool)
    rows = np.r_[train, val]
    used[ds.date[rows], ds.symbol[rows]] = True
    le = np.full(ds.shape, np.iinfo(np.int64).max, np.int64)
    le[ds.date[rows], ds.symbol[rows]] = ds.label_end[rows]
    outside = int(((ds.date[train] < split.train[0]) | (ds.date[train] >= split.train[1])).sum())
    outside += int(((ds.date[val] < split.val[0]) | (ds.date[val] >= split.val[1])).sum())
    return count_leakage(split, used, le) + outside


# ------------------------------------------------------------------------------------------------
# one fold
# ------------------------------------------------------------------------------------------------


def fit_tree(
    config: TreeConfig,
    Xtr: np.ndarray,
    ytr: np.ndarray,
    Xva: np.ndarray,
    yva: np.ndarray,
    gtr: np.ndarray | None = None,
    gva: np.ndarray | None = None,
    *,
    seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    feature_names=(),
) -> tuple[TreeModel, list]:
    """Fit one booster with early stopping on the validation rows.

    ``ytr``/``yva`` are the task's labels: 0/1 (classification), the target (regression, the
    ranker's pointwise baseline), relevance grades 0..Q-1 (rank, with query-group sizes
    ``gtr``/``gva``), or returns (dollar profit: divided here by their training-block standard
    deviation, a positive rescaling that leaves the minimiser unchanged). Early stopping: LightGBM
    ``early_stopping`` (first metric) / XGBoost ``early_stopping_rounds`` on the validation rows,
    with the dollar-profit objective's own metric (mean ``tanh(s) r``, higher is better).

    Returns
    -------
    (model, curve): the :class:`kit.models.trees.TreeModel` (predicting with the best iteration's
    trees) and the validation metric per boosting round, ``[(round, metric_name, value), ...]``.

    Raises
    ------
    ValueError
        Empty training or validation rows.
    """
    if len(Xtr) == 0 or len(Xva) == 0:
        raise ValueError(f"fit_tree needs training and validation rows, got {len(Xtr)} and {len(Xva)}")
    threads = n_threads(threads)
    task = config.task
    if task == "dollar_profit":
        sd = float(np.std(ytr))
        sd = sd if sd > 0 else 1.0
        ytr, yva = ytr / sd, yva / sd
    if config.library == "lightgbm":
        import lightgbm as lgb

        p = lgb_params(task, seed, threads, config.params)
        feval = None
        if task == "dollar_profit":
            p["objective"] = lgb_dollar_profit_objective(config.hessian_floor)

            def feval(preds, data):
                return "dollar_profit", dollar_profit(preds, data.get_label()), True

        if task == "rank":
            full = int(max(gtr.max(), gva.max()))
            p.setdefault("lambdarank_truncation_level", full)  # every pair of the list, not only the top 30
            p.setdefault("eval_at", [full])  # NDCG of the whole cross-section
        rank = task == "rank"
        dtr = lgb.Dataset(Xtr, ytr, group=gtr if rank else None, free_raw_data=True)
        dva = lgb.Dataset(Xva, yva, group=gva if rank else None, reference=dtr)
        record: dict = {}
        booster = lgb.train(
            p, dtr, num_boost_round=int(config.n_estimators), valid_sets=[dva], valid_names=["val"], feval=feval,
            callbacks=[lgb.early_stopping(int(config.early_stopping_rounds), first_metric_only=True, verbose=False), lgb.record_evaluation(record)],
        )
        best = int(booster.best_iteration) or booster.current_iteration()
        metric, values = next(iter(record.get("val", {}).items()), ("", []))
        return TreeModel(booster, config, best, feature_names, threads), [(i + 1, metric, float(v)) for i, v in enumerate(values)]
    import xgboost as xgb

    p = xgb_params(task, seed, threads, device, config.params)
    dtr = xgb.DMatrix(Xtr, label=ytr, nthread=threads)
    dva = xgb.DMatrix(Xva, label=yva, nthread=threads)
    obj = custom = None
    if task == "dollar_profit":
        obj = xgb_dollar_profit_objective(config.hessian_floor)

        def custom(predt, dmat):
            return "neg_dollar_profit", -dollar_profit(predt, dmat.get_label())

    record = {}
    booster = xgb.train(
        p, dtr, num_boost_round=int(config.n_estimators), evals=[(dva, "val")], obj=obj, custom_metric=custom,
        early_stopping_rounds=int(config.early_stopping_rounds), evals_result=record, verbose_eval=False,
    )
    metric, values = next(iter(record.get("val", {}).items()), ("", []))
    return TreeModel(booster, config, int(booster.best_iteration) + 1, feature_names, threads), [(i + 1, metric, float(v)) for i, v in enumerate(values)]


def _to_positions(task: str, p_va: np.ndarray, p_te: np.ndarray):
    if task == "classification":
        return positions_from_probability(p_va), positions_from_probability(p_te), None
    if task == "regression":
        scale = float(np.sqrt(np.mean(p_va**2)))  # root mean square of the validation predictions
        if not scale > 0:
            scale = 1.0  # every validation prediction is exactly 0: positions 0 whatever the scale
        return positions_from_prediction(p_va, scale), positions_from_prediction(p_te, scale), scale
    if task == "dollar_profit":
        return np.tanh(p_va), np.tanh(p_te), None
    return None, None, None  # rank / cross-sectional regression: scores only


_HIGHER_IS_BETTER = ("ndcg", "dollar_profit", "auc", "map")


@dataclass(frozen=True)
class TreeFoldArgs:
    """Inputs of one tree or ranker fit on one walk-forward fold (:func:`fit_tree_fold`): the model's
    :class:`kit.models.trees.TreeConfig`, the fold's :class:`Split`, its seed (``seed + fold``, from
    the fold, never from execution order), the library threads and device; ``data`` names the
    :class:`TabularDataset` in the task's ``shared`` dict."""

    data: str
    config: TreeConfig
    split: Split
    seed: int
    threads: int
    device: str = "cpu"

    def key(self) -> str:
        """The task's key: everything the result depends on."""
        import hashlib

        ident = repr((self.data, self.config, self.split, self.seed, self.threads, self.device))
        return f"fit/{self.config.model}/fold{self.split.fold:02d}/seed{self.seed}/{hashlib.sha1(ident.encode()).hexdigest()[:12]}"


@dataclass
class TreeFoldFit:
    """Result of :func:`fit_tree_fold`: the fitted :class:`kit.models.trees.TreeModel`, its
    validation curve ``[(round, metric, value), ...]``, the fold's training, validation and test
    row positions ``(R_*,)`` int64 in the dataset, the scores ``(R_val,)``, ``(R_test,)`` float64
    on the validation and test rows, and the fold's leakage count (:func:`fold_leakage`, 0: the
    task refuses a fold that leaks)."""

    model: TreeModel
    curve: list
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    val_scores: np.ndarray
    test_scores: np.ndarray
    leakage_rows: int = 0


def fit_tree_fold(args: TreeFoldArgs, shared: dict) -> TreeFoldFit:
    """Fit one tree or ranker on one fold: the pure task of :func:`walk_forward_trees` and
    :func:`walk_forward_ranker` (one per fold; for a ranker, the fit over the fold's rebalance
    dates). Reads the :class:`TabularDataset` ``shared[args.data]``; writes nothing.

    Raises
    ------
    LeakageError
        A training or validation row's label reaches a later block (cannot happen with
        :func:`fold_rows`; checked anyway).
    ValueError
        A fold without training or validation rows.
    """
    ds: TabularDataset = shared[args.data]
    split = args.split
    tr, va, te = fold_rows(ds, split)
    leak = fold_leakage(ds, split, tr, va)
    if leak:
        raise LeakageError(f"fold {split.fold}: {leak} rows reach a later block")
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"fold {split.fold}: {len(tr)} training and {len(va)} validation rows; need both")
    label = args.config.task == "rank"
    y_tr = ds.label[tr] if label else ds.y[tr]
    y_va = ds.label[va] if label else ds.y[va]
    model, curve = fit_tree(
        args.config, ds.X[tr], y_tr, ds.X[va], y_va, ds.groups(tr), ds.groups(va), seed=args.seed, threads=args.threads,
        device=args.device, feature_names=ds.feature_names,
    )
    return TreeFoldFit(model, curve, tr, va, te, model.predict(ds.X[va]), model.predict(ds.X[te]), int(leak))


def _walk(ds: TabularDataset, splits, config: TreeConfig, *, seed, threads, device, checkpoint_dir, data_sha256, progress, backend=None):
    """Fit ``config`` on every fold, one task per fold run by ``backend``
    (:func:`kit.training.tasks.resolve_runner`); the driver (this process) assembles the grids and
    writes the checkpoints. Returns ``(scores, positions, folds, history, fold_predictions,
    last_model, tasks, exec_info)`` with ``(T, N)`` score and position grids (NaN off the test
    blocks), one ``tasks`` row per fold task (as :func:`kit.training.walk_forward.walk_forward_models`'s;
    stage ``tree:<model>``) and the runner's description with the stage's wall time."""
    T, N = ds.shape
    scores = np.full((T, N), np.nan)
    positions = np.full((T, N), np.nan)
    logs, curves, preds, task_rows = [], [], [], []
    runner = resolve_runner(backend)
    ns = f"tree/{config.model}"
    args = [TreeFoldArgs(ns, config, split, seed + split.fold, threads, device) for split in splits]
    tasks = [Task(fit_tree_fold, a, a.key(), float(a.split.train[1] - a.split.train[0])) for a in args]
    t0 = time.perf_counter()
    outcomes = runner.map(tasks, {ns: ds}, progress=f"{config.model} folds" if progress else None)
    exec_info = {**runner.describe(), "stage_wall_seconds": {f"tree:{config.model}": round(time.perf_counter() - t0, 2)}}
    model = None
    for split, a, oc in zip(splits, args, outcomes, strict=True):
        fit = oc.value
        model = fit.model
        tr, va, te = fit.train_rows, fit.val_rows, fit.test_rows
        p_va, p_te = fit.val_scores, fit.test_scores
        pos_va, pos_te, scale = _to_positions(config.task, p_va, p_te)
        scores[ds.date[te], ds.symbol[te]] = p_te
        if pos_te is not None:
            positions[ds.date[te], ds.symbol[te]] = pos_te
        preds.append(FoldPredictions(
            split.fold, ds.date[va], ds.symbol[va], pos_va if pos_va is not None else p_va,
            ds.date[te], ds.symbol[te], pos_te if pos_te is not None else p_te,
        ))
        info = split.describe(ds.index)
        info.update(
            model=config.model, leakage_rows=fit.leakage_rows, train_rows=int(len(tr)), val_rows=int(len(va)), test_rows=int(len(te)),
            best_iteration=model.best_iteration, position_scale=scale, seconds=round(oc.seconds, 3), cpu_seconds=round(oc.cpu_seconds, 3),
            node=oc.node,
        )
        for it, metric, value in fit.curve:
            curves.append({"fold": split.fold, "model": config.model, "epoch": it, "metric": metric,
                           "val_loss": -value if metric.split("@")[0] in _HIGHER_IS_BETTER else value})
        info["val_metric"] = fit.curve[model.best_iteration - 1][2] if len(fit.curve) >= model.best_iteration else float("nan")
        if checkpoint_dir is not None:
            path = save_tree(
                Path(checkpoint_dir) / f"{config.model}_fold{split.fold:02d}.pt", model, data_sha256=data_sha256,
                train_period=(info["train_start"], info["val_end"]), extra={"fold": split.fold, "seed": a.seed, "position_scale": scale},
            )
            info["checkpoint"] = str(path)
        logs.append(info)
        task_rows.append({"task": oc.key, "stage": f"tree:{config.model}", "model": config.model, "fold": split.fold, "seconds": oc.seconds,
                          "cpu_seconds": oc.cpu_seconds, "node": oc.node, "pid": oc.pid, "threads": oc.threads, "attempt": oc.attempt})
        if progress:
            print(f"{config.model} fold {split.fold}: {info['test_start']}..{info['test_end']} best_iteration={model.best_iteration} {info['seconds']}s")
    return scores, positions, pd.DataFrame(logs), pd.DataFrame(curves), preds, model, pd.DataFrame(task_rows), exec_info


def _task_threads(threads, backend) -> int:
    """Library threads of a tree fit: ``threads`` when given (> 0), else the backend's pinned task
    threads (1 unless ``--threads`` / ``KIT_TASK_THREADS`` say otherwise), so serial, process and
    Ray runs fit with the same count and give the same trees."""
    if threads:
        return n_threads(threads)
    return int(resolve_runner(backend).describe().get("threads") or 1)


def _test_slice(grid: np.ndarray, splits, index, columns) -> pd.DataFrame:
    a, b = splits[0].test[0], splits[-1].test[1]
    return pd.DataFrame(grid[a:b], index=index[a:b], columns=columns)


def _tree_config(model: str, n_features: int, **kw) -> TreeConfig:
    if model not in TREE_MODELS:
        raise ValueError(f"model {model!r} is not a tree model; known: {list(TREE_MODELS)}")
    _, library, task = TREE_MODELS[model]
    return TreeConfig(model=model, library=library, task=task, n_features=n_features, **kw)


# ------------------------------------------------------------------------------------------------
# daily models
# ------------------------------------------------------------------------------------------------


def walk_forward_trees(
    features,
    close: pd.DataFrame,
    *,
    model: str = "xgb_direction",
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
    threads: int | None = None,
    device: str = "auto",
    vol_span: int = VOL_SPAN,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = False,
    backend=None,
) -> WalkForwardResult:
    """Walk-forward gradient-boosted trees for next-day / next-week direction or return (seed 004).

    One pooled model per fold over every (date, symbol) row with finite features; expanding
    training window, validation = its last ``val_fraction`` (early stopping), test = the next
    ``test_size`` trading days (:func:`kit.training.splits.walk_forward_splits` with ``horizon``,
    so the embargo is the label horizon). The target of a row at t is ``r = close_{t+h} / close_t - 1``:

    - ``*_direction`` (classification): label ``1{r > 0}`` (a zero return counts as down); LightGBM
      ``binary`` or XGBoost ``binary:logistic``, early-stopped on validation log-loss; score =
      P(up), position = ``2 P - 1``;
    - ``*_return`` (regression): label ``r / (sigma_t sqrt(h))`` with the daily ex-ante volatility
      ``sigma_t`` (span ``vol_span``; pooled assets on one scale) or ``r`` if
      ``normalise_target=False``; L2 loss; position = ``tanh(pred / scale)``, ``scale`` = RMS of
      the validation predictions;
    - ``*_dollar_profit``: seed 004's objective (:func:`kit.models.trees.dollar_profit_grad_hess`)
      on ``r``; early-stopped on validation mean profit; position = ``tanh(score)``.

    Parameters
    ----------
    features : :class:`kit.features.FeatureArray` ``(T, N, F)`` labelled like ``close``
        (e.g. :func:`kit.features.tree_features`).
    close : (T, N) adjusted closes.
    model : a tree model of :data:`kit.models.trees.TREE_MODELS` (not a ranker).
    horizon : label horizon in trading days (1 = next day, 5 = next week).
    test_start, test_end, test_size, val_fraction, train_start : as
        :func:`kit.training.splits.walk_forward_splits`.
    membership : optional (T, N) bool universe; rows outside it are neither trained nor scored.
    params : overrides of the library parameters (:func:`kit.models.trees.lgb_params` / ``xgb_params``).
    n_estimators, early_stopping_rounds : boosting rounds and patience on validation.
    hessian_floor : of the dollar-profit objective.
    seed : fold k uses ``seed + k``. threads : the libraries' fixed thread count per fold (default:
        the backend's task threads, 1 unless ``--threads`` / ``KIT_TASK_THREADS`` set it).
    device : XGBoost device (:func:`kit.models.trees.xgb_device`); LightGBM is CPU.
    checkpoint_dir : one ``kit.tree/1`` checkpoint per fold when given (written by this process).
    backend : runs the folds' fits, one task each (:func:`fit_tree_fold`): None or ``"serial"``, or
        a runner of :func:`kit.exec.make_backend` (process pool, Ray); the results do not depend on it.

    Returns
    -------
    :class:`kit.training.walk_forward.WalkForwardResult` with ``positions`` and ``scores``
    ``(T_test, N)``.

    Raises
    ------
    ValueError
        Unknown or ranker model, mismatched labels, a fold without training or validation rows.
    LeakageError
        A fold's rows reach a later block (cannot happen; checked anyway).
    """
    values, names = _as_values(features)
    if values.shape[:2] != close.shape:
        raise ValueError(f"features are {values.shape[:2]} (T, N), close {close.shape}")
    config = _tree_config(model, len(names), horizon=int(horizon), params=dict(params or {}), n_estimators=n_estimators,
                          early_stopping_rounds=early_stopping_rounds, hessian_floor=hessian_floor)
    if config.task in RANK_TASKS:
        raise ValueError(f"model {model!r} is a ranker: use walk_forward_ranker")
    r, label_end = horizon_target(close, horizon)
    y = r.to_numpy()
    if config.task == "classification":
        y = np.where(np.isfinite(y), (y > 0).astype("float64"), np.nan)
    elif config.task == "regression" and normalise_target:
        vol = ex_ante_vol(daily_returns(close), span=vol_span, annualise=False).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(vol > 0, y / (vol * math.sqrt(horizon)), np.nan)
    ds = tabular_dataset(features, y, label_end, close.index, close.columns, membership=membership)
    threads = _task_threads(threads, backend)
    splits = walk_forward_splits(close.index, test_start, test_size, test_end, val_fraction, horizon=int(horizon), train_start=train_start)
    scores, positions, folds, history, preds, last, tasks, exec_info = _walk(
        ds, splits, config, seed=seed, threads=threads, device=device, checkpoint_dir=checkpoint_dir, data_sha256=data_sha256, progress=progress,
        backend=backend,
    )
    cfg = {
        **config.to_dict(), "test_start": str(test_start), "test_end": None if test_end is None else str(test_end), "test_size": test_size,
        "val_fraction": val_fraction, "normalise_target": normalise_target, "seed": seed, "threads": threads,
        "device": xgb_device(device)["device"] if config.library == "xgboost" else "cpu", "exec": exec_info,
    }
    vol_ann = ex_ante_vol(daily_returns(close))
    return WalkForwardResult(
        _test_slice(positions, splits, close.index, close.columns), folds, names, vol_ann, cfg, history, last, None, None,
        _test_slice(scores, splits, close.index, close.columns), preds, tasks,
    )


# ------------------------------------------------------------------------------------------------
# learning to rank
# ------------------------------------------------------------------------------------------------


def walk_forward_ranker(
    close: pd.DataFrame,
    *,
    model: str = "lambdamart",
    test_start,
    features=None,
    rebalance_freq: str = "M",
    membership=None,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    train_start=None,
    n_quantiles: int = 10,
    params: dict | None = None,
    n_estimators: int = 500,
    early_stopping_rounds: int = 50,
    seed: int = 0,
    threads: int | None = None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = False,
    backend=None,
) -> WalkForwardResult:
    """Learning to rank for cross-sectional momentum (Poh, Lim, Zohren & Roberts, 2021), walk-forward.

    On each rebalance date (month ends by default) every member with finite features is a row; the
    query group is the date; the relevance label is the quantile (0..n_quantiles-1) of the asset's
    *next-period* return ``close_{t_{k+1}} / close_{t_k} - 1`` within that date's cross-section
    (:func:`kit.features.period_returns`, :func:`tabular_dataset`). Models:

    - ``lambdamart``: LightGBM LambdaMART, NDCG over the whole cross-section (all pairs:
      ``lambdarank_truncation_level`` = group size), early-stopped on validation NDCG;
    - ``ranker_regression``: the pointwise baseline, LightGBM L2 regression of the next-period
      return on the same rows and features ("regress-then-rank"), early-stopped on validation L2;
      so the value of ranking is measured with everything else equal.

    Folds retrain every ``test_size`` trading days on an expanding window; validation is the last
    ``val_fraction`` of it; rows whose next-period return ends at or after a block's start are
    embargoed from the earlier block. Positions are the quantile legs of the test-block scores
    (:func:`kit.features.quantile_legs`: +1 top quantile, -1 bottom, 0 other members), held between
    rebalances; NaN before the first test rebalance and for non-members.
    :func:`kit.portfolio.cross_sectional.leg_weights` sizes them into a book.
    Paper: :data:`POH_2021` (what the kit checked of their headline numbers).

    Parameters
    ----------
    close : (T, N) adjusted closes.
    features : FeatureArray ``(T, N, F)``; default :func:`kit.features.ltr_features` (Poh et al.'s inputs).
    rebalance_freq : ``"W"``, ``"M"`` or ``"Q"`` (:func:`kit.features.rebalance_dates`).
    membership : optional (T, N) bool point-in-time universe (a price on the date is also needed).
    threads, backend, checkpoint_dir : as :func:`walk_forward_trees` (one task per fold: its fit on
        the fold's rebalance dates).

    Returns
    -------
    :class:`kit.training.walk_forward.WalkForwardResult`: ``positions`` (legs) and ``scores`` (on
    test rebalance dates) ``(T_test, N)``.

    Raises
    ------
    ValueError
        Not a ranker model, a fold without training or validation rows.
    """
    feats = ltr_features(close) if features is None else features
    values, names = _as_values(feats)
    if values.shape[:2] != close.shape:
        raise ValueError(f"features are {values.shape[:2]} (T, N), close {close.shape}")
    config = _tree_config(model, len(names), horizon=0, rebalance_freq=rebalance_freq, n_quantiles=int(n_quantiles),
                          params=dict(params or {}), n_estimators=n_estimators, early_stopping_rounds=early_stopping_rounds)
    if config.task not in RANK_TASKS:
        raise ValueError(f"model {model!r} is not a ranker; rankers: {[n for n, v in TREE_MODELS.items() if v[2] in RANK_TASKS]}")
    reb = rebalance_dates(close.index, rebalance_freq)
    reb_pos = rebalance_positions(close.index, reb)
    target, label_end = period_returns(close, reb_pos)
    member = close.notna().to_numpy()
    if membership is not None:
        m = np.asarray(membership, dtype=bool)
        if m.shape != close.shape:
            raise ValueError(f"membership has shape {m.shape}, close {close.shape}")
        member = member & m
    ds = tabular_dataset(feats, target, label_end, close.index, close.columns, dates=reb_pos, membership=member, n_quantiles=n_quantiles)
    threads = _task_threads(threads, backend)
    splits = walk_forward_splits(close.index, test_start, test_size, test_end, val_fraction, horizon=1, train_start=train_start)
    scores, _, folds, history, preds, last, tasks, exec_info = _walk(
        ds, splits, config, seed=seed, threads=threads, device="cpu", checkpoint_dir=checkpoint_dir, data_sha256=data_sha256, progress=progress,
        backend=backend,
    )
    scores_df = pd.DataFrame(scores, index=close.index, columns=close.columns)
    a, b = splits[0].test[0], splits[-1].test[1]
    test_reb = reb[(reb >= close.index[a]) & (reb <= close.index[b - 1])]
    legs = quantile_legs(scores_df, member, test_reb, n_quantiles) if len(test_reb) else scores_df * np.nan
    cfg = {**config.to_dict(), "test_start": str(test_start), "test_end": None if test_end is None else str(test_end), "test_size": test_size,
           "val_fraction": val_fraction, "seed": seed, "threads": threads, "n_rebalance": int(len(reb_pos)), "exec": exec_info}
    return WalkForwardResult(
        legs.iloc[a:b], folds, names, ex_ante_vol(daily_returns(close)), cfg, history, last, None, None, scores_df.iloc[a:b], preds, tasks,
    )


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
    members : name -> list of :class:`kit.training.walk_forward.FoldPredictions` (the same folds for
        every member: ``result.fold_predictions`` of any walk-forward).
    returns : (T, N) forward returns the positions earn (e.g. :func:`kit.features.horizon_target`),
        labels of the members' date and symbol positions.
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
        val = np.stack([fp.grid("val", (T, N)) for fp in fps])
        common = np.isfinite(val).all(axis=0) & np.isfinite(R)
        di, si = np.nonzero(common)
        w = fit_stacker(val[:, di, si], R[di, si], method)
        test = np.stack([fp.grid("test", (T, N)) for fp in fps])
        ok = np.isfinite(test).all(axis=0)
        out[ok] = np.tensordot(w, np.where(ok, test, 0.0), axes=1)[ok]
        rows.append({"fold": fps[0].fold, **{n: float(x) for n, x in zip(names, w, strict=True)}, "val_rows": int(len(di))})
    return pd.DataFrame(out, index=returns.index, columns=returns.columns), pd.DataFrame(rows)


def walk_forward_tree_lstm_stack(
    close: pd.DataFrame, members: dict, *, name: str = "tree_lstm_stack", method: str = "nnls", checkpoint_dir=None
) -> WalkForwardResult:
    """Seed 004's combination of a tree model and an LSTM: their walk-forward positions stacked
    fold by fold with weights fitted on validation blocks only (:func:`walk_forward_stack`, on the
    next-day returns the positions earn).

    Parameters
    ----------
    close : (T, N) adjusted closes the members were trained on.
    members : name -> :class:`kit.training.walk_forward.WalkForwardResult` with ``fold_predictions``
        on the same folds (e.g. ``dmn_lstm`` from :func:`kit.training.walk_forward.walk_forward`
        and ``xgb_direction`` from :func:`walk_forward_trees`, both with horizon 1 and the same
        test dates, test size and validation fraction).
    method : ``"nnls"`` or ``"sharpe"`` (:func:`fit_stacker`).
    checkpoint_dir : when given and every member recorded a checkpoint per fold, one ``kit.stack/1``
        checkpoint per fold (members' checkpoints and weights, :func:`kit.models.save_stack`).

    Returns
    -------
    :class:`kit.training.walk_forward.WalkForwardResult`: stacked ``positions`` ``(T_test, N)``,
    one ``folds`` row per fold (dates, members' weights, validation rows, leakage rows = the
    members' maximum), ``fold_predictions`` (test positions only).

    Raises
    ------
    ValueError
        Fewer than 2 members, a member without fold predictions, or members on different folds.
    """
    for n, r in members.items():
        if not r.fold_predictions:
            raise ValueError(f"stack member {n!r} has no fold_predictions (train it with this kit version)")
    r1, _ = horizon_target(close, 1)
    positions, weights = walk_forward_stack({n: r.fold_predictions for n, r in members.items()}, r1, method)
    first = next(iter(members.values()))

    def own_rows(n, f):
        return f[f["model"] == n] if "model" in f and (f["model"] == n).any() else f

    member_folds = {n: own_rows(n, r.folds) for n, r in members.items()}
    logs = []
    for row in weights.to_dict("records"):
        k = row["fold"]
        ref = member_folds[next(iter(member_folds))]
        ref = ref[ref["fold"] == k].iloc[0]
        info = {c: ref[c] for c in ("fold", "train_start", "train_end", "val_start", "val_end", "test_start", "test_end") if c in ref}
        leak = max(int(f.loc[f["fold"] == k, "leakage_rows"].max()) for f in member_folds.values())
        info.update(model=name, leakage_rows=leak, weights={n: round(row[n], 4) for n in members}, val_rows=row["val_rows"])
        paths = {n: f.loc[f["fold"] == k, "checkpoint"].dropna() for n, f in member_folds.items() if "checkpoint" in f}
        if checkpoint_dir is not None and len(paths) == len(members) and all(len(p) for p in paths.values()):
            info["checkpoint"] = str(save_stack(
                Path(checkpoint_dir) / f"{name}_fold{int(k):02d}.pt", name, {n: p.iloc[0] for n, p in paths.items()},
                {n: row[n] for n in members}, method,
            ))
        logs.append(info)
    idx = first.positions.index
    P = positions.to_numpy()
    empty = np.empty(0, np.int64)
    test_preds = [FoldPredictions(fp.fold, empty, empty, np.empty(0), fp.test_date, fp.test_symbol, P[fp.test_date, fp.test_symbol])
                  for fp in first.fold_predictions]
    cfg = {"model": name, "members": list(members), "method": method, "member_configs": {n: r.config for n, r in members.items()}}
    return WalkForwardResult(
        positions.reindex(idx), pd.DataFrame(logs), list(members), first.ex_ante_vol, cfg, pd.DataFrame(), None, None, None, None, test_preds,
    )


# ------------------------------------------------------------------------------------------------
# by name (for notebooks)
# ------------------------------------------------------------------------------------------------


def walk_forward_tree_model(
    frames: dict,
    model: str,
    *,
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    train_start=None,
    seed: int = 0,
    horizon: int = 1,
    n_quantiles: int = 10,
    rebalance_freq: str = "M",
    n_estimators: int = 500,
    early_stopping_rounds: int = 50,
    threads: int | None = None,
    stack_members=("dmn_lstm", "xgb_direction"),
    stack_method: str = "nnls",
    train_member=None,
    previous: dict | None = None,
    membership=None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = False,
    backend=None,
) -> WalkForwardResult:
    """Walk-forward training of a tree, ranker or stack model of the catalogue by name.

    - ranker (``lambdamart``, ``ranker_regression``): :func:`walk_forward_ranker` on
      ``frames["close"]`` with :func:`kit.features.ltr_features`;
    - tree (``xgb_direction`` ...): :func:`walk_forward_trees` on :func:`kit.features.tree_features`
      of ``frames`` with label horizon ``horizon``;
    - stack (``tree_lstm_stack``): :func:`walk_forward_tree_lstm_stack` of ``stack_members``, each
      taken from ``previous`` (results already trained in this run, with fold predictions; a tree
      member only if its label horizon is 1, the stack's next-day returns) or trained here: tree
      members with ``horizon=1``, others through ``train_member(name)`` (a callable training a torch
      model with the same test dates, e.g. :meth:`kit.training.WalkForwardSettings.run`).

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames by field (:func:`kit.data.wide_fields`).
    membership : optional ``(T, N)`` bool point-in-time index membership (a DataFrame is aligned
        to ``frames["close"]``, missing cells count as not members): rows outside it are neither
        trained nor scored.
    backend : runs the trees' and rankers' fold fits (:func:`walk_forward_trees`); a stack's
        members trained here use it too.
    Others : as the functions above; ``seed`` is the first fold's seed.

    Raises
    ------
    ValueError
        Not a tree, ranker or stack model; a stack member that is neither a tree model nor
        trainable through ``train_member``.
    """
    from ..models import model_kind

    kind = model_kind(model)
    close = frames["close"]
    if membership is not None:
        membership = align_membership(membership, close).to_numpy(dtype=bool)
    common = dict(membership=membership, test_start=test_start, test_end=test_end, test_size=test_size, val_fraction=val_fraction, train_start=train_start, seed=seed,
                  threads=threads, checkpoint_dir=checkpoint_dir, data_sha256=data_sha256, progress=progress, backend=backend)
    if kind == "ranker":
        return walk_forward_ranker(close, model=model, rebalance_freq=rebalance_freq, n_quantiles=n_quantiles, n_estimators=n_estimators,
                                   early_stopping_rounds=early_stopping_rounds, **common)
    if kind == "tree":
        return walk_forward_trees(tree_features(frames), close, model=model, horizon=horizon, n_estimators=n_estimators,
                                  early_stopping_rounds=early_stopping_rounds, **common)
    if kind != "stack":
        raise ValueError(f"model {model!r} is a {kind} model, not a tree, ranker or stack model")
    previous = previous or {}
    members = {}
    for name in stack_members:
        prev = previous.get(name)
        if name in TREE_MODELS:
            if TREE_MODELS[name][2] in RANK_TASKS:
                raise ValueError(f"stack member {name!r} is a ranker; the stack combines next-day positions")
            ok = prev is not None and prev.fold_predictions and int(prev.config.get("horizon", 1)) == 1
            members[name] = prev if ok else walk_forward_trees(
                tree_features(frames), close, model=name, horizon=1, n_estimators=n_estimators, early_stopping_rounds=early_stopping_rounds, **common)
        elif prev is not None and prev.fold_predictions:
            members[name] = prev
        elif train_member is not None:
            members[name] = train_member(name)
        else:
            raise ValueError(f"stack member {name!r} is not a tree model and no train_member was given to train it")
    return walk_forward_tree_lstm_stack(close, members, name=model, method=stack_method, checkpoint_dir=checkpoint_dir)
