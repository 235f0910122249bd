"""Walk-forward experiments: every position model of the catalogue, ensembles, and the per-ticker
forecasters (LDTM), trained fold by fold on expanding windows; only the stitched test blocks are
returned.

The independent units are pure tasks (:mod:`kit.training.tasks`): a (model, fold) fit
(:func:`fit_fold`), a fold's ensemble combination (:func:`combine_fold`), a (fold, chunk of symbols)
LDTM fit (:func:`fit_ldtm_chunk`). A backend runs them (serial by default; a process pool or Ray
from :mod:`kit.exec`) and this module, the driver, assembles their results and writes the
checkpoints."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..conventions import FORECAST_HORIZONS, TARGET_VOL, TRADING_DAYS
from ..data import align_membership
from ..features import (
    daily_returns,
    ex_ante_vol,
    feature_array,
    feature_set,
    forward_returns,
    make_samples,
    make_sequences,
    next_day_target,
    padded_windows,
    rolling_windows,
)
from ..models import (
    POSITION_MODELS,
    TREE_KINDS,
    TREE_MODELS,
    PositionEnsemble,
    ensemble_weights,
    make_model,
    model_kind,
    save_bundle,
    save_checkpoint,
)
from .results import FoldPredictions, WalkForwardResult
from .splits import LeakageError, Split, count_leakage, walk_forward_splits
from .tasks import Task, dedupe, resolve_runner
from .trainer import TrainConfig, Trainer, TrainResult, set_seed

__all__ = [
    "CombineArgs",
    "FitArgs",
    "FoldFit",
    "FoldPredictions",
    "LdtmArgs",
    "LdtmChunkFit",
    "combine_fold",
    "fit_fold",
    "fit_ldtm_chunk",
    "WalkForwardResult",
    "WalkForwardSettings",
    "predict_positions",
    "predict_forecasts",
    "ldtm_positions",
    "position_scale",
    "walk_forward",
    "walk_forward_dmn",
    "walk_forward_ldtm",
    "walk_forward_model",
    "walk_forward_models",
]




@torch.no_grad()
def predict_positions(model: torch.nn.Module, features: np.ndarray, start: int, end: int, lookback: int, batch: int = 4096) -> np.ndarray:
    """Positions for decision dates ``[start, end)``: the model's last-step output on the window of
    ``lookback`` dates ending at each date. Returns ``(end - start, N)`` float64, NaN where the
    features at the decision date are not all finite."""
    model.eval()
    dev = next(model.parameters()).device
    X, valid = rolling_windows(features, start, end, lookback)
    out = []
    for i in range(0, len(X), batch):
        out.append(model(torch.as_tensor(X[i : i + batch]).to(dev))[:, -1].float().cpu().numpy())
    pos = np.concatenate(out).astype(np.float64).reshape(end - start, features.shape[1]) if out else np.zeros((0, features.shape[1]))
    pos[~valid] = np.nan
    return pos



# ------------------------------------------------------------------------------------------------
# Tasks of the position models: one (model, fold) fit, one ensemble combination per fold
# ------------------------------------------------------------------------------------------------


def _digest(obj) -> str:
    """A short, stable hash of a task's identity (its repr: dataclasses, tuples, dicts, numbers)."""
    return hashlib.sha1(repr(obj).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class FitArgs:
    """Inputs of one (model, fold) fit (:func:`fit_fold`): the model's name and architecture, the
    fold's :class:`Split`, its seed, the training settings (a :class:`TrainConfig` as a dict with
    the seed set) and the window length; ``data`` names the arrays in the task's ``shared`` dict
    (``{data: {"X": (T, N, F) float32, "y": (T, N) float64}}``). ``want_test``/``want_val``: also
    predict the test block / the validation block (the stacked ensemble's weights need it)."""

    data: str
    name: str
    fold: int
    k: int
    seed: int
    split: Split
    n_features: int
    hidden_size: int
    num_layers: int
    dropout: float
    n_heads: int
    train: tuple
    lookback: int
    want_test: bool = True
    want_val: bool = False

    def key(self) -> str:
        """The task's key: everything the result depends on (not the ``want_*`` flags)."""
        ident = (self.data, self.name, self.split, self.seed, self.n_features, self.hidden_size, self.num_layers,
                 self.dropout, self.n_heads, self.train, self.lookback)
        return f"fit/{self.name}/fold{self.fold:02d}/seed{self.seed}/{_digest(ident)}"

    def make(self) -> torch.nn.Module:
        """A fresh (untrained) model of this architecture."""
        return make_model(self.name, self.n_features, self.hidden_size, self.dropout, self.num_layers, self.n_heads, kind="position")


@dataclass
class FoldFit:
    """Result of :func:`fit_fold`: the trained weights (best validation epoch), the
    :class:`TrainResult`, sample counts, and positions ``(D, N)`` float64 on the test and (when
    asked) validation blocks."""

    state_dict: dict
    result: TrainResult
    train_samples: int
    val_samples: int
    test_positions: np.ndarray | None
    val_positions: np.ndarray | None


def fit_fold(args: FitArgs, shared: dict) -> FoldFit:
    """Train one position model on one fold: the pure task of :func:`walk_forward`.

    Seeds Python, numpy and torch with ``args.seed`` (derived from the fold and the member index,
    never from execution order), builds the model, trains it with the Sharpe loss on the fold's
    training sequences (:func:`kit.features.make_sequences`, ``lookback`` days) with early
    stopping on its validation block, and predicts the test block (and the validation block when
    ``args.want_val``). Reads ``shared[args.data]["X"]`` ``(T, N, F)`` float32 and ``["y"]``
    ``(T, N)`` float64; writes nothing.

    Raises
    ------
    ValueError
        An empty training or validation set (from :class:`Trainer`).
    """
    X, y = shared[args.data]["X"], shared[args.data]["y"]
    split = args.split
    tr = make_sequences(X, y, *split.train, args.lookback)
    va = make_sequences(X, y, *split.val, min(args.lookback, split.val[1] - split.val[0]))
    set_seed(args.seed)
    net = args.make()
    result = Trainer(TrainConfig(**dict(args.train))).fit(net, tr, va)
    test_pos = predict_positions(net, X, *split.test, args.lookback) if args.want_test else None
    val_pos = predict_positions(net, X, *split.val, args.lookback) if args.want_val else None
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return FoldFit(state, result, int(tr[2].sum()), int(va[2].sum()), test_pos, val_pos)


@dataclass(frozen=True)
class CombineArgs:
    """Inputs of one fold's ensemble (:func:`combine_fold`): the members' :class:`FitArgs` and
    trained weights, their validation losses and (stacked) validation positions, the weighting
    method and the window length."""

    data: str
    fold: int
    split: Split
    members: tuple
    states: tuple
    val_losses: tuple
    val_positions: tuple | None
    method: str
    lookback: int


def combine_fold(args: CombineArgs, shared: dict):
    """Weights of one fold's ensemble (:func:`kit.models.ensemble_weights`, fitted on the fold's
    validation block only) and its test-block positions ``(D, N)`` float64 from the
    :class:`kit.models.PositionEnsemble` of the trained members. Returns ``(weights (K,), positions)``."""
    X, y = shared[args.data]["X"], shared[args.data]["y"]
    nets = []
    for fa, state in zip(args.members, args.states, strict=True):
        net = fa.make()
        net.load_state_dict(state)
        net.eval()
        nets.append(net)
    w = ensemble_weights(
        list(args.val_losses), args.method,
        val_positions=np.stack(args.val_positions) if args.val_positions else None,
        val_target=y[args.split.val[0] : args.split.val[1]],
    )
    return w, predict_positions(PositionEnsemble(nets, w), X, *args.split.test, args.lookback)


# ------------------------------------------------------------------------------------------------
# Plans: the tasks of one model's walk-forward and how their results are assembled (the driver)
# ------------------------------------------------------------------------------------------------


def _member_array(membership, frame: pd.DataFrame) -> np.ndarray | None:
    """The ``(T, N)`` bool membership mask aligned to ``frame`` (False where not given), or None."""
    if membership is None:
        return None
    return align_membership(membership, frame).to_numpy(dtype=bool)


@dataclass
class _DmnData:
    ns: str
    X: np.ndarray
    names: list
    y: np.ndarray
    vol: pd.DataFrame
    valid: np.ndarray
    member: np.ndarray | None = None
    features: str = "dmn"


def _dmn_data(close: pd.DataFrame, target_vol: float, ns: str = "dmn", membership=None, features: str = "dmn",
              data_sha256: str = "", progress: bool = False) -> _DmnData:
    fa = feature_array(features, close, data_sha256=data_sha256 or None, progress=progress)
    X = fa.values.astype(np.float32)
    target_df, vol = next_day_target(close, target_vol=target_vol)
    y = target_df.to_numpy(dtype="float64")
    member = _member_array(membership, close)
    if member is not None:  # point-in-time: no training or validation target where the symbol is not a member
        y = np.where(member, y, np.nan)
    return _DmnData(ns, X, fa.names, y, vol, np.isfinite(X).all(axis=-1) & np.isfinite(y), member, features)


def _node_list(outcomes) -> str:
    return ",".join(dict.fromkeys(o.node for o in outcomes))


class _PositionPlan:
    """One position model's (or ensemble's) walk-forward as tasks, and its assembly."""

    def __init__(self, close, data: _DmnData, *, model, test_start, test_end, test_size, val_fraction, lookback, target_vol,
                 hidden_size, num_layers, dropout, n_heads, members, ensemble_method, train, train_start, checkpoint_dir,
                 data_sha256, fold_predictions: bool = True):
        self.fold_predictions = fold_predictions  # a stack's meta-learner needs them: one inference pass over each validation block
        self.names_to_train = list(members) if model == "ensemble" else [model]
        for name in self.names_to_train:
            if name not in POSITION_MODELS:
                raise ValueError(f"model {name!r} is not a position model; known: {POSITION_MODELS + ('ensemble',)}")
        self.close, self.data, self.model, self.train = close, data, model, train
        self.lookback, self.members, self.ensemble_method = lookback, members, ensemble_method
        self.checkpoint_dir, self.data_sha256 = checkpoint_dir, data_sha256
        self.shared = {data.ns: {"X": data.X, "y": data.y}}
        self.splits = walk_forward_splits(close.index, test_start, test_size, test_end, val_fraction, horizon=1, train_start=train_start)
        self.leak = {}
        for split in self.splits:
            leak = count_leakage(split, data.valid)
            if leak:
                raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
            self.leak[split.fold] = leak
        stacked = model == "ensemble" and ensemble_method == "stacked"
        self.args = {}
        for split in self.splits:
            for k, name in enumerate(self.names_to_train):
                seed = train.seed + split.fold + 1000 * k
                self.args[split.fold, k] = FitArgs(
                    data.ns, name, split.fold, k, seed, split, len(data.names), hidden_size, num_layers, dropout, n_heads,
                    tuple(sorted({**asdict(train), "seed": seed}.items())), lookback, want_test=model != "ensemble", want_val=stacked,
                )
        self.config = {
            "model": model,
            "members": list(members) if model == "ensemble" else None,
            "ensemble_method": ensemble_method if model == "ensemble" else None,
            "test_start": str(test_start),
            "test_end": str(test_end) if test_end is not None else None,
            "test_size": test_size,
            "val_fraction": val_fraction,
            "lookback": lookback,
            "target_vol": target_vol,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "dropout": dropout,
            "n_heads": n_heads,
            "features": data.features,
            "train": asdict(train),
        }

    def fit_tasks(self) -> list[Task]:
        cost = {"momentum_transformer": 6.0, "dmn_lstm": 2.0}
        return [Task(fit_fold, a, a.key(), cost.get(a.name, 0.2) * (a.split.train[1] - a.split.train[0]))
                for a in self.args.values()]

    def combine_tasks(self, fits: dict) -> list[Task]:
        if self.model != "ensemble":
            return []
        out = []
        for split in self.splits:
            fa = [self.args[split.fold, k] for k in range(len(self.names_to_train))]
            ff = [fits[a.key()].value for a in fa]
            ca = CombineArgs(self.data.ns, split.fold, split, tuple(fa), tuple(f.state_dict for f in ff),
                             tuple(f.result.best_val_loss for f in ff),
                             tuple(f.val_positions for f in ff) if self.ensemble_method == "stacked" else None,
                             self.ensemble_method, self.lookback)
            out.append(Task(combine_fold, ca, f"combine/{self.ensemble_method}/fold{split.fold:02d}/{_digest(tuple(a.key() for a in fa))}", 0.1))
        return out

    def assemble(self, fits: dict, combines: dict) -> WalkForwardResult:
        dates, data = self.close.index, self.data
        logs, blocks, curves, fold_preds = [], [], [], []
        last_model = None
        combine_keys = {t.args.fold: t.key for t in self.combine_tasks(fits)} if self.model == "ensemble" else {}
        for split in self.splits:
            fitted = []
            for k, name in enumerate(self.names_to_train):
                fa = self.args[split.fold, k]
                oc = fits[fa.key()]
                ff = oc.value
                net = fa.make()
                net.load_state_dict(ff.state_dict)
                net.eval()
                info = split.describe(dates)
                info["model"] = name
                if self.checkpoint_dir is not None:
                    ckpt = save_checkpoint(
                        Path(self.checkpoint_dir) / f"{name}_fold{split.fold:02d}.pt",
                        net,
                        feature_names=data.names,
                        data_sha256=self.data_sha256,
                        train_period=(info["train_start"], info["val_end"]),
                        extra={"fold": split.fold, "train_config": asdict(self.train), "seed": fa.seed},
                    )
                    info["checkpoint"] = str(ckpt)
                info.update(
                    leakage_rows=self.leak[split.fold],
                    train_samples=ff.train_samples,
                    val_samples=ff.val_samples,
                    best_epoch=ff.result.best_epoch,
                    epochs_run=ff.result.epochs_run,
                    val_sharpe=-ff.result.best_val_loss,
                    seconds=round(oc.seconds, 2),
                    cpu_seconds=round(oc.cpu_seconds, 2),
                    node=oc.node,
                )
                logs.append(info)
                curves.extend({"fold": split.fold, "model": name, **h} for h in ff.result.history)
                fitted.append(net)
            if self.model == "ensemble":
                oc = combines[combine_keys[split.fold]]
                w, pos = oc.value
                net = PositionEnsemble(fitted, w)
                logs.append({**split.describe(dates), "model": "ensemble", "leakage_rows": self.leak[split.fold],
                             "weights": {n: round(float(v), 4) for n, v in zip(self.names_to_train, w, strict=True)},
                             "seconds": round(oc.seconds, 2), "cpu_seconds": round(oc.cpu_seconds, 2), "node": oc.node})
            else:
                net = fitted[0]
                pos = fits[self.args[split.fold, 0].key()].value.test_positions
            if data.member is not None:  # no position where the symbol is not an index member
                pos = np.where(data.member[split.test[0] : split.test[1]], pos, np.nan)
            blocks.append(pd.DataFrame(pos, index=dates[split.test[0] : split.test[1]], columns=self.close.columns))
            if self.fold_predictions:  # this fold's validation and test positions on the full axes, for a stack's meta-learner
                val_grid, test_grid = np.full(data.y.shape, np.nan), np.full(data.y.shape, np.nan)
                val_grid[split.val[0] : split.val[1]] = predict_positions(net, data.X, *split.val, self.lookback)
                test_grid[split.test[0] : split.test[1]] = pos
                fold_preds.append(FoldPredictions.from_arrays(split.fold, val_grid, test_grid))
            last_model = net
        positions = pd.concat(blocks)
        return WalkForwardResult(positions, pd.DataFrame(logs), data.names, data.vol, self.config, pd.DataFrame(curves), last_model, data.X,
                                 fold_predictions=fold_preds if self.fold_predictions else None)


def _execute(plans, backend=None, progress: bool = True) -> list[WalkForwardResult]:
    """Run every plan's tasks on one backend: all fits in one batch (duplicates run once), then the
    ensembles' combinations; the driver (this process) assembles the results and writes the
    checkpoints. The runner's description is added to each result's ``config["exec"]``."""
    runner = resolve_runner(backend)
    shared = {}
    for p in plans:
        shared.update(p.shared)
    merged: dict = {}
    for p in plans:
        for t in p.fit_tasks():
            if t.key in merged:  # same fit asked twice: run once, predicting what either asked for
                a, b = merged[t.key].args, t.args
                t = Task(t.fn, replace(b, want_test=a.want_test or b.want_test, want_val=a.want_val or b.want_val), t.key, t.cost)
            merged[t.key] = t
    tasks = list(merged.values())
    t0 = time.perf_counter()
    fits = {o.key: o for o in runner.map(tasks, shared, progress="walk-forward fits" if progress else None)} if tasks else {}
    t1 = time.perf_counter()
    ctasks = dedupe([t for p in plans for t in p.combine_tasks(fits)])
    combines = {o.key: o for o in runner.map(ctasks, shared)} if ctasks else {}
    out = []
    desc = {**runner.describe(), "stage_wall_seconds": {"fit": round(t1 - t0, 2), "combine": round(time.perf_counter() - t1, 2)}}
    for p in plans:
        r = p.assemble(fits, combines)
        r.config["exec"] = desc
        used = [("fit", t) for t in p.fit_tasks()] + [("combine", t) for t in p.combine_tasks(fits)]
        r.tasks = pd.DataFrame([
            {"task": t.key, "stage": stage, "model": p.config["model"], "fold": t.args.fold, "seconds": o.seconds,
             "cpu_seconds": o.cpu_seconds, "node": o.node, "pid": o.pid, "threads": o.threads, "attempt": o.attempt}
            for stage, t in used for o in [(fits if stage == "fit" else combines)[t.key]]
        ])
        out.append(r)
    return out


def walk_forward(
    close: pd.DataFrame,
    *,
    model: str = "dmn_lstm",
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    lookback: int = 63,
    target_vol: float = TARGET_VOL,
    hidden_size: int = 20,
    num_layers: int = 1,
    dropout: float = 0.1,
    n_heads: int = 4,
    members=("dmn_lstm", "momentum_transformer", "mlp"),
    ensemble_method: str = "stacked",
    train: TrainConfig | None = None,
    train_start=None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = True,
    backend=None,
    membership: pd.DataFrame | None = None,
    features: str = "dmn",
) -> WalkForwardResult:
    """Train a position model walk-forward on the DMN features (or those of ``features``); return its
    stitched out-of-sample positions.

    Features are the DMN set (:func:`kit.features.feature_set` ``'dmn'``) by default, or the array of
    the specification ``features`` (:func:`kit.features.feature_array`, e.g. ``"dmn+cpd21+bocpd"``
    for the changepoint features of the Momentum Transformer paper); the target is
    ``target_vol / ex_ante_vol_t * r_{t+1}`` (:func:`kit.features.next_day_target`), trained with the
    Sharpe loss. For each fold of :func:`walk_forward_splits` a fresh model (seed ``train.seed +
    fold``) is trained on the training block, early-stopped on the validation block, checkpointed,
    and used to predict the test block. Only test-block predictions are returned.

    ``model="ensemble"`` trains every model in ``members`` per fold (member k with seed
    ``train.seed + fold + 1000 k``) and combines their positions with weights from
    :func:`kit.models.ensemble_weights` (``ensemble_method`` ``equal``, ``inverse_loss`` or
    ``stacked``), fitted on that fold's validation block only.

    Each (model, fold) fit is one task (:func:`fit_fold`) and each fold's ensemble combination
    another (:func:`combine_fold`), run by ``backend``: ``None`` or ``"serial"`` (this process, one
    task after the other) or a runner from :func:`kit.exec.make_backend` (a local process pool or
    Ray). Tasks are seeded from the fold and member, and run with a pinned thread count
    (:func:`kit.training.tasks.run_task`), so every backend gives the same positions and
    checkpoints. Checkpoints are written here, by the driver, after the tasks return.

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes; columns are symbols.
    membership : optional (T, N) bool DataFrame (e.g. :attr:`kit.data.UniverseData.membership`):
        point-in-time index membership. A symbol that is not a member on decision date t has no
        training or validation target at t (it is not in any fold's targets there) and no position
        (NaN, not live) at t; its prices still feed the features of later dates.
    features : feature specification (default ``"dmn"``: the results of the kit before it had one;
        e.g. ``"dmn+cpd21+bocpd"`` for the changepoint features of the Momentum Transformer paper,
        :func:`kit.features.feature_array`).
    backend : see above; its description (backend, threads, workers) is recorded in
        ``result.config["exec"]`` and where each task ran in ``result.folds["node"]``.

    Raises
    ------
    LeakageError
        A fold has a non-zero leakage count (cannot happen with :func:`walk_forward_splits`; checked
        anyway so that a change there cannot silently leak).
    ValueError
        Unknown model name or backend.
    """
    train = train or TrainConfig()
    plan = _PositionPlan(
        close, _dmn_data(close, target_vol, membership=membership, features=features, data_sha256=data_sha256, progress=progress),
        model=model, test_start=test_start, test_end=test_end, test_size=test_size,
        val_fraction=val_fraction, lookback=lookback, target_vol=target_vol, hidden_size=hidden_size, num_layers=num_layers,
        dropout=dropout, n_heads=n_heads, members=members, ensemble_method=ensemble_method, train=train, train_start=train_start,
        checkpoint_dir=checkpoint_dir, data_sha256=data_sha256,
    )
    return _execute([plan], backend, progress)[0]


def walk_forward_dmn(close: pd.DataFrame, **kwargs) -> WalkForwardResult:
    """:func:`walk_forward` with ``model="dmn_lstm"`` (the Deep Momentum LSTM)."""
    return walk_forward(close, model="dmn_lstm", **kwargs)



def predict_forecasts(model: torch.nn.Module, features: np.ndarray, start: int, end: int, lookback: int, batch: int = 4096) -> np.ndarray:
    """Forecasts of one forecaster for decision dates ``[start, end)`` of one symbol.

    Parameters
    ----------
    model : a forecaster ``(B, L, F) -> (B, H)`` (e.g. :class:`kit.models.ldtm.LDTMForecaster`).
    features : ``(T, F)`` float array of that symbol's features (NaN where unknown).
    start, end : positions on the date axis; lookback : window length L.

    Returns
    -------
    ``(end - start, H)`` float64; NaN where the window is incomplete or holds a non-finite value
    (never a forecast from zero-filled inputs).
    """
    win = padded_windows(features[:, None, :], start, end, lookback, dtype=np.float32)[:, 0]  # (D, L, F)
    ok = np.isfinite(win).all(axis=(1, 2))
    H = len(model.config.horizons)
    out = np.full((end - start, H), np.nan)
    if ok.any():
        x = torch.from_numpy(np.ascontiguousarray(win[ok]))
        model.eval()
        dev = next(model.parameters()).device
        with torch.no_grad():
            pred = torch.cat([model(x[i : i + batch].to(dev)).float().cpu() for i in range(0, len(x), batch)])
        out[ok] = pred.numpy().astype(np.float64)
    return out



def ldtm_positions(forecast: np.ndarray, daily_vol: np.ndarray, scale: float) -> np.ndarray:
    """Positions in [-1, 1] from one-day return forecasts: ``tanh(scale * forecast / daily_vol)``.

    ``forecast / daily_vol`` is the forecast in units of the asset's ex-ante daily volatility (a
    z-score); ``scale`` maps a typical z-score to a moderate position. :func:`walk_forward_ldtm`
    and :func:`kit.training.foundation.walk_forward_foundation` set it with :func:`position_scale`
    on the fold's validation forecasts, so nothing from the test block enters. NaN where the forecast or volatility is unknown or the
    volatility is not positive. Shapes: any, broadcast; float64.

    Raises
    ------
    ValueError
        ``scale`` not finite and positive.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    f = np.asarray(forecast, dtype="float64")
    v = np.asarray(daily_vol, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(np.isfinite(v) & (v > 0), f / v, np.nan)
    return np.tanh(scale * z)



@dataclass(frozen=True)
class LdtmArgs:
    """Inputs of one (fold, chunk of symbols) task of :func:`walk_forward_ldtm`
    (:func:`fit_ldtm_chunk`): the fold, the symbols' column indices, the base seed (symbol j of
    fold f gets ``seed + 1000 f + j``), the :class:`~kit.models.LDTMConfig` and training settings as
    dicts, the :func:`~kit.training.batched.train_universe` path and the sample settings; ``data``
    names ``shared[data]`` = ``{"X": (T, N, F), "fwd": (T, N, H)}``."""

    data: str
    fold: int
    split: Split
    symbols: tuple
    seed: int
    config: tuple
    train: tuple
    path: str
    lookback: int
    sample_stride: int
    min_train_samples: int

    def key(self) -> str:
        """The task's key (everything the result depends on)."""
        ident = (self.data, self.split, self.symbols, self.seed, self.config, self.train, self.path, self.lookback,
                 self.sample_stride, self.min_train_samples)
        return f"ldtm/fold{self.fold:02d}/symbols{self.symbols[0]}-{self.symbols[-1]}/{_digest(ident)}"


@dataclass
class LdtmChunkFit:
    """Result of :func:`fit_ldtm_chunk`: the symbols trained (column indices, those with enough
    windows), their seeds, trained weights and :class:`TrainResult` s, sample counts, the
    :func:`~kit.training.batched.train_universe` path, test forecasts ``(D_test, K, H)`` and
    one-day validation forecasts ``(D_val, K)`` (float64, NaN where a window is incomplete)."""

    trained: list
    seeds: list
    state_dicts: list
    results: list
    train_samples: list
    val_samples: list
    path: str
    test_forecasts: np.ndarray
    val_forecasts: np.ndarray


def fit_ldtm_chunk(args: LdtmArgs, shared: dict) -> LdtmChunkFit:
    """Train the LDTM forecasters of one chunk of symbols on one fold: the pure task of
    :func:`walk_forward_ldtm`. A symbol is trained when it has at least ``min_train_samples``
    training windows and 2 validation windows; all trained symbols of the chunk go through one
    :func:`~kit.training.batched.train_universe` call with their own seeds. Writes nothing."""
    from ..models import LDTMConfig
    from .batched import train_universe

    X, fwd = shared[args.data]["X"], shared[args.data]["fwd"]
    split, lookback, stride = args.split, args.lookback, args.sample_stride
    datasets, trained = [], []
    for j in args.symbols:
        Xt, yt, _ = make_samples(X[:, j : j + 1], fwd[:, j : j + 1], lookback, *split.train)
        Xv, yv, _ = make_samples(X[:, j : j + 1], fwd[:, j : j + 1], lookback, *split.val)
        if stride > 1:
            Xt, yt = Xt[::-1][::stride][::-1], yt[::-1][::stride][::-1]
        if len(Xt) >= args.min_train_samples and len(Xv) >= 2:
            datasets.append((Xt, yt, Xv, yv))
            trained.append(j)
    cfg = LDTMConfig(**dict(args.config))
    t0, t1 = split.test
    v0, v1 = split.val
    H = len(cfg.horizons)
    if not datasets:
        return LdtmChunkFit([], [], [], [], [], [], args.path, np.zeros((t1 - t0, 0, H)), np.zeros((v1 - v0, 0)))
    seeds = [args.seed + 1000 * split.fold + j for j in trained]
    fit = train_universe(datasets, cfg, TrainConfig(**dict(args.train)), args.path, seeds=seeds)
    test_fc = np.full((t1 - t0, len(trained), H), np.nan)
    val_fc = np.full((v1 - v0, len(trained)), np.nan)
    for i, (model, j) in enumerate(zip(fit.models, trained, strict=True)):
        test_fc[:, i] = predict_forecasts(model, X[:, j], t0, t1, lookback)
        val_fc[:, i] = predict_forecasts(model, X[:, j], v0, v1, lookback)[:, 0]
    states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in fit.models]
    return LdtmChunkFit(trained, seeds, states, fit.results, [len(d[0]) for d in datasets], [len(d[2]) for d in datasets],
                        fit.path, test_fc, val_fc)


class _LdtmPlan:
    """The per-ticker forecasters' walk-forward as (fold, chunk) tasks, and its assembly."""

    def __init__(self, frames, *, test_start, test_end, test_size, val_fraction, lookback, hidden_size, num_layers, dropout,
                 horizons, train, path, sample_stride, min_train_samples, chunk_size, train_start, checkpoint_dir, data_sha256,
                 ns: str = "ldtm", membership=None):
        from ..models import LDTMConfig

        if int(sample_stride) != sample_stride or sample_stride < 1:
            raise ValueError(f"sample_stride must be an integer >= 1, got {sample_stride!r}")
        if min_train_samples < 2:
            raise ValueError(f"min_train_samples must be >= 2, got {min_train_samples!r}")
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 0:
            raise ValueError(f"chunk_size must be an integer >= 0 (0: all symbols of a fold in one task), got {chunk_size!r}")
        horizons = tuple(int(h) for h in horizons)
        close = frames["close"] if "close" in frames else None
        fa = feature_set("ldtm", frames)
        X, names = fa.values, fa.names
        fwd = forward_returns(close, horizons).values
        self.member = _member_array(membership, close)
        if self.member is not None:  # point-in-time: no target where the symbol is not a member
            fwd[~self.member] = np.nan
        vol = ex_ante_vol(daily_returns(close))
        self.daily_vol = vol.to_numpy(dtype="float64") / np.sqrt(float(TRADING_DAYS))
        self.close, self.X, self.names, self.vol, self.horizons = close, X, list(names), vol, horizons
        self.train, self.checkpoint_dir, self.data_sha256 = train, checkpoint_dir, data_sha256
        self.shared = {ns: {"X": X, "fwd": fwd}}
        self.cfg = LDTMConfig(n_features=len(names), hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, horizons=horizons)
        self.splits = walk_forward_splits(close.index, test_start, test_size, test_end, val_fraction, horizon=max(horizons), train_start=train_start)
        valid = np.isfinite(X).all(axis=-1) & np.isfinite(fwd).all(axis=-1)
        self.leak = {}
        for split in self.splits:
            leak = count_leakage(split, valid)
            if leak:
                raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
            self.leak[split.fold] = leak
        N = close.shape[1]
        size = N if chunk_size == 0 else int(chunk_size)
        chunks = [tuple(range(a, min(a + size, N))) for a in range(0, N, size)]
        cfg_items = tuple(sorted(asdict(self.cfg).items()))
        train_items = tuple(sorted(asdict(train).items()))
        self.args = {
            (split.fold, c): LdtmArgs(ns, split.fold, split, chunk, int(train.seed), cfg_items, train_items, path, lookback,
                                      int(sample_stride), int(min_train_samples))
            for split in self.splits for c, chunk in enumerate(chunks)
        }
        self.n_chunks = len(chunks)
        self.config = {
            "model": "ldtm",
            "test_start": str(test_start),
            "test_end": str(test_end) if test_end is not None else None,
            "test_size": test_size,
            "val_fraction": val_fraction,
            "lookback": lookback,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "dropout": dropout,
            "horizons": list(horizons),
            "sample_stride": sample_stride,
            "min_train_samples": min_train_samples,
            "path": path,
            "chunk_size": int(chunk_size),
            "train": asdict(train),
        }

    def fit_tasks(self) -> list[Task]:
        return [Task(fit_ldtm_chunk, a, a.key(), 4.0 * len(a.symbols) * (a.split.train[1] - a.split.train[0]) / max(a.sample_stride, 1))
                for a in self.args.values()]

    def combine_tasks(self, fits: dict) -> list[Task]:
        return []

    def assemble(self, fits: dict, combines: dict) -> WalkForwardResult:
        from ..models import LDTMForecaster

        dates, symbols, horizons = self.close.index, self.close.columns, self.horizons
        logs, pos_blocks, curves = [], [], []
        fc_blocks = {h: [] for h in horizons}
        for split in self.splits:
            outs = [fits[self.args[split.fold, c].key()] for c in range(self.n_chunks)]
            parts = [o.value for o in outs]
            trained = [j for p in parts for j in p.trained]
            if not trained:
                raise ValueError(f"fold {split.fold}: no symbol has {self.args[split.fold, 0].min_train_samples} training windows of "
                                 f"{self.args[split.fold, 0].lookback} days")
            seeds = [s for p in parts for s in p.seeds]
            results = [r for p in parts for r in p.results]
            t0, t1 = split.test
            v0, v1 = split.val
            test_fc = np.full((t1 - t0, len(symbols), len(horizons)), np.nan)
            z_val = []
            for p in parts:
                for i, j in enumerate(p.trained):
                    test_fc[:, j] = p.test_forecasts[:, i]
                    fv = p.val_forecasts[:, i]
                    if self.member is not None:  # no forecast where the symbol is not a member
                        test_fc[~self.member[t0:t1, j], j] = np.nan
                        fv = np.where(self.member[v0:v1, j], fv, np.nan)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        z_val.append(fv / self.daily_vol[v0:v1, j])
            z = np.concatenate(z_val)
            z = z[np.isfinite(z)]
            sd = float(np.std(z)) if len(z) > 1 else 0.0
            scale = 1.0 / sd if sd > 0 else 1.0
            pos = ldtm_positions(test_fc[:, :, 0], self.daily_vol[t0:t1], scale)
            test_dates = dates[t0:t1]
            pos_blocks.append(pd.DataFrame(pos, index=test_dates, columns=symbols))
            for i, h in enumerate(horizons):
                fc_blocks[h].append(pd.DataFrame(test_fc[:, :, i], index=test_dates, columns=symbols))
            info = split.describe(dates)
            info.update(
                model="ldtm",
                leakage_rows=self.leak[split.fold],
                symbols_trained=len(trained),
                train_samples=int(sum(n for p in parts for n in p.train_samples)),
                val_samples=int(sum(n for p in parts for n in p.val_samples)),
                best_epoch=float(np.mean([r.best_epoch for r in results])),
                epochs_run=float(np.mean([r.epochs_run for r in results])),
                val_mse=float(np.mean([r.best_val_loss for r in results])),
                position_scale=scale,
                path=parts[0].path if len({p.path for p in parts if p.trained}) <= 1 else ",".join(sorted({p.path for p in parts if p.trained})),
                seconds=round(sum(o.seconds for o in outs), 2),
                cpu_seconds=round(sum(o.cpu_seconds for o in outs), 2),
                tasks=len(outs),
                node=_node_list(outs),
            )
            if self.checkpoint_dir is not None:
                models = []
                for p in parts:
                    for state in p.state_dicts:
                        m = LDTMForecaster(self.cfg)
                        m.load_state_dict(state)
                        models.append(m.eval())
                ckpt = Path(self.checkpoint_dir) / f"ldtm_fold{split.fold:02d}.pt"
                save_bundle(
                    ckpt, [str(symbols[j]) for j in trained], models, feature_names=self.names, data_sha256=self.data_sha256,
                    train_period=(info["train_start"], info["val_end"]),
                    extra={"fold": split.fold, "seeds": seeds, "position_scale": scale, "train_config": asdict(self.train)},
                )
                info["checkpoint"] = str(ckpt)
            logs.append(info)
            hist = pd.DataFrame([{**h} for r in results for h in r.history])
            if len(hist):
                for _, row in hist.groupby("epoch").mean(numeric_only=True).reset_index().iterrows():
                    curves.append({"fold": split.fold, "model": "ldtm", "epoch": int(row["epoch"]), "train_loss": row["train_loss"], "val_loss": row["val_loss"]})
        positions = pd.concat(pos_blocks)
        forecasts = {h: pd.concat(b) for h, b in fc_blocks.items()}
        return WalkForwardResult(positions, pd.DataFrame(logs), self.names, self.vol, dict(self.config), pd.DataFrame(curves), None, self.X, forecasts)

def position_scale(forecast_1d, daily_vol) -> float:
    """The scale ``s`` of :func:`ldtm_positions`, fitted on validation forecasts:
    ``s = 1 / std(z)`` with ``z = forecast_1d / daily_vol`` pooled over every (date, symbol) pair
    where z is finite (population standard deviation), so that a one-standard-deviation forecast
    maps to ``tanh(1) = 0.76``.

    Parameters
    ----------
    forecast_1d : array of one-day return forecasts on the validation dates, any shape (e.g.
        ``(T_val, N)``; NaN where there is none).
    daily_vol : ex-ante daily volatility, same shape (annualised vol / sqrt(252)).

    Returns
    -------
    float > 0; 1.0 when fewer than 2 finite z or when they do not vary.

    Raises
    ------
    ValueError
        Shapes that differ.
    """
    f = np.asarray(forecast_1d, dtype="float64")
    v = np.asarray(daily_vol, dtype="float64")
    if f.shape != v.shape:
        raise ValueError(f"forecast_1d {f.shape} and daily_vol {v.shape} must have the same shape")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = f / v
    z = z[np.isfinite(z)]
    sd = float(np.std(z)) if len(z) > 1 else 0.0
    return 1.0 / sd if sd > 0 else 1.0



def walk_forward_ldtm(
    frames: dict,
    *,
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    lookback: int = 30,
    hidden_size: int = 128,
    num_layers: int = 2,
    dropout: float = 0.2,
    horizons=FORECAST_HORIZONS,
    train: TrainConfig | None = None,
    path: str = "auto",
    sample_stride: int = 1,
    min_train_samples: int = 100,
    chunk_size: int = 0,
    train_start=None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = True,
    backend=None,
    membership: pd.DataFrame | None = None,
) -> WalkForwardResult:
    """Per-ticker multi-horizon LSTMs (LDTM, seed 003) trained walk-forward, one model per symbol
    and fold, the symbols of a fold trained in chunks of ``chunk_size`` (default 0: all of them)
    by one :func:`kit.training.batched.train_universe` call each.

    Inputs are the 11 ``ldtm`` features (:func:`kit.features.feature_set`), windows of ``lookback``
    days min-max scaled per window inside the model; targets are forward simple returns over
    ``horizons`` (:func:`kit.features.forward_returns`), trained with the multi-horizon MSE. Splits
    come from :func:`walk_forward_splits` with ``horizon = max(horizons)`` (a 21-day embargo before
    validation and test blocks); each fold's leakage count must be 0. A symbol is trained in a fold
    when it has at least ``min_train_samples`` complete training windows and 2 validation windows;
    otherwise it has no position in that fold's test block (NaN = not live). Symbol j of fold f is
    seeded with ``train.seed + 1000 f + j``.

    Positions for the backtest: :func:`ldtm_positions` on the one-day forecast, scaled by the
    ex-ante daily volatility, with its scale fitted on the fold's validation forecasts only (pooled
    over all chunks, by the driver; as :func:`position_scale`).

    Each (fold, chunk) is one task (:func:`fit_ldtm_chunk`) run by ``backend`` (as
    :func:`walk_forward`); the chunking is part of the task's definition, so every backend gives
    the same results for the same ``chunk_size``.

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames ``open, high, low, close, volume``
        (:func:`kit.data.wide_fields`), adjusted prices.
    sample_stride : keep every k-th training window (most recent first); consecutive windows
        overlap by ``lookback - 1`` days, so a stride > 1 trades little information for speed.
    path : :func:`kit.training.batched.train_universe` path (``auto``, ``batched`` or ``loop``).
    membership : optional (T, N) bool point-in-time membership: no target, forecast or position for a
        symbol on a decision date when it is not a member (as :func:`walk_forward`).
    chunk_size : symbols per task (0: one task per fold with every symbol).
    Others as :func:`walk_forward`.

    Returns
    -------
    :class:`WalkForwardResult` with ``positions`` ``(T_test, N)``, ``forecasts`` ``{h: (T_test,
    N)}``, one ``folds`` row per fold (symbols trained, samples, mean validation MSE, task seconds,
    nodes) and the mean validation curve per fold in ``history``. Checkpoints (one file per fold
    holding every symbol's state dict, its symbol list, config, feature names, data sha256 and
    training period) go to ``checkpoint_dir`` when given, written by the driver.

    Raises
    ------
    LeakageError
        A fold has a non-zero leakage count.
    ValueError
        A missing field, bad ``sample_stride``/``min_train_samples``/``chunk_size``, or no symbol
        with enough data in some fold.
    """
    plan = _LdtmPlan(
        frames, test_start=test_start, test_end=test_end, test_size=test_size, val_fraction=val_fraction, lookback=lookback,
        hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, horizons=horizons, train=train or TrainConfig(), path=path,
        sample_stride=sample_stride, min_train_samples=min_train_samples, chunk_size=chunk_size, train_start=train_start,
        checkpoint_dir=checkpoint_dir, data_sha256=data_sha256, membership=membership,
    )
    return _execute([plan], backend, progress)[0]


_COMMON_WF_KEYS = ("test_start", "test_end", "test_size", "val_fraction", "train", "train_start", "checkpoint_dir", "data_sha256", "progress", "backend",
                   "membership")



def _plan(frames: dict, model: str, ldtm: dict | None, dmn_cache: dict, kwargs: dict, progress: bool = False,
          fold_predictions: bool = True):
    """The plan of one model's walk-forward (the position models' features computed once per target
    volatility and feature specification)."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("progress", "backend")}
    if model == "ldtm":
        common = {k: v for k, v in kwargs.items() if k in _COMMON_WF_KEYS}
        lk = dict(ldtm or {})
        return _LdtmPlan(frames, **{**_LDTM_DEFAULTS, **common, **lk, "train": common.get("train") or TrainConfig()})
    if "close" not in frames:
        raise ValueError(f"frames needs a 'close' field for model {model!r}; got {sorted(frames)}")
    kw = {**_POSITION_DEFAULTS, **kwargs}
    kw["train"] = kw["train"] or TrainConfig()
    membership = kw.pop("membership")
    features = kw.pop("features")
    key = (kw["target_vol"], features)
    if key not in dmn_cache:
        dmn_cache[key] = _dmn_data(frames["close"], key[0], ns=f"dmn{len(dmn_cache) or ''}", membership=membership, features=features,
                                   data_sha256=kw["data_sha256"], progress=progress)
    return _PositionPlan(frames["close"], dmn_cache[key], model=model, fold_predictions=fold_predictions, **kw)


_POSITION_DEFAULTS = {
    "test_end": None, "test_size": 252, "val_fraction": 0.1, "lookback": 63, "target_vol": TARGET_VOL, "hidden_size": 20,
    "num_layers": 1, "dropout": 0.1, "n_heads": 4, "members": ("dmn_lstm", "momentum_transformer", "mlp"),
    "ensemble_method": "stacked", "train": None, "train_start": None, "checkpoint_dir": None, "data_sha256": "", "membership": None,
    "features": "dmn",
}
""":func:`walk_forward`'s defaults (every keyword but ``test_start``, ``progress`` and ``backend``)."""

_LDTM_DEFAULTS = {
    "test_end": None, "test_size": 252, "val_fraction": 0.1, "lookback": 30, "hidden_size": 128, "num_layers": 2, "dropout": 0.2,
    "horizons": FORECAST_HORIZONS, "path": "auto", "sample_stride": 1, "min_train_samples": 100, "chunk_size": 0, "train_start": None,
    "checkpoint_dir": None, "data_sha256": "", "membership": None,
}
""":func:`walk_forward_ldtm`'s defaults (every keyword but ``test_start``, ``train``, ``progress`` and ``backend``)."""



def walk_forward_model(
    frames: dict, model: str, *, ldtm: dict | None = None, tree: dict | None = None, previous: dict | None = None, **kwargs
) -> WalkForwardResult:
    """Walk-forward training of any model of the kit by name, for notebooks.

    ``model="ldtm"`` runs :func:`walk_forward_ldtm` on ``frames`` with the keys of ``kwargs`` it
    shares with :func:`walk_forward` (test dates and size, validation fraction, ``train``,
    checkpoints, data sha256, progress, backend) plus ``ldtm`` (its own settings, e.g.
    ``hidden_size``, ``lookback``, ``sample_stride``, ``chunk_size``); tree, ranker and stack
    models (catalogue kinds :data:`kit.models.TREE_KINDS`) run
    :func:`kit.training.trees.walk_forward_tree_model` with the shared keys plus ``tree`` (its
    settings: ``horizon``, ``n_quantiles``, ``rebalance_freq``, ``n_estimators``,
    ``early_stopping_rounds``, ``threads``, ``stack_members``, ``stack_method``) and ``previous``
    (results of this run a stack may reuse); every other name runs :func:`walk_forward` on
    ``frames["close"]`` with ``kwargs``.

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames by field (:func:`kit.data.wide_fields`); the
        position models need only ``close``.

    Raises
    ------
    ValueError
        Unknown model name, or a missing field.
    """
    if model == "ldtm":
        common = {k: v for k, v in kwargs.items() if k in _COMMON_WF_KEYS}
        return walk_forward_ldtm(frames, **common, **(ldtm or {}))
    if model_kind(model) in TREE_KINDS:
        from .trees import walk_forward_tree_model  # trees imports .results, not this module: no cycle

        common = {k: v for k, v in kwargs.items() if k in _COMMON_WF_KEYS and k not in ("train", "backend", "membership")}
        seed = kwargs["train"].seed if kwargs.get("train") is not None else 0

        def train_member(name):
            return walk_forward_model(frames, name, ldtm=ldtm, **kwargs)

        return walk_forward_tree_model(frames, model, seed=seed, previous=previous, train_member=train_member,
                                       membership=kwargs.get("membership"), backend=kwargs.get("backend"), **common, **(tree or {}))
    if "close" not in frames:
        raise ValueError(f"frames needs a 'close' field for model {model!r}; got {sorted(frames)}")
    return walk_forward(frames["close"], model=model, **kwargs)



def walk_forward_models(frames: dict, models, *, per_model: dict | None = None, ldtm: dict | None = None, tree: dict | None = None,
                        backend=None, progress: bool = True, previous: dict | None = None, fold_predictions: bool | None = None,
                        **kwargs) -> dict:
    """Walk-forward training of several models at once: every (model, fold) fit of every model is
    one task in a single batch run by ``backend`` (so a pool or cluster is kept busy across
    models, the longest tasks first), a fit shared by two models (the ensemble's DMN member and
    the stand-alone DMN LSTM of the same fold, seed and settings) runs once, and the ensembles'
    combinations follow as a second batch. Each model's result equals
    :func:`walk_forward_model`'s for the same arguments.

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames by field (:func:`kit.data.wide_fields`).
    models : model names (any of the catalogue's position models, ``ensemble``, ``ldtm``, and its
        tree, ranker and stack models: these follow the others, in the order given, each model's
        fold fits one batch of tasks on ``backend``, and a stack reuses the members trained before it).
    per_model : ``{name: {keyword: value}}`` overriding ``kwargs`` for one model (e.g. searched
        hyperparameters, or ``features``); a ``"model"`` key trains that catalogue model under
        ``name`` (a variant, :mod:`kit.training.variants`).
    ldtm, tree, kwargs : as :func:`walk_forward_model`.
    previous : name -> result trained earlier in this run, which a stack may reuse (as those of
        this batch).
    fold_predictions : keep every fold's validation and test positions (``result.fold_predictions``,
        an inference pass over each validation block in the driver) for every position model
        (True), for none (False), or (None, default) for the members of a stack of this batch only.

    Returns
    -------
    dict name -> :class:`WalkForwardResult`, in the order of ``models``.

    Raises
    ------
    ValueError
        Unknown model or backend, a missing field, a duplicate model name.
    LeakageError
        A fold leaks (never with :func:`walk_forward_splits`).
    """
    models = list(models)
    if len(set(models)) != len(models):
        raise ValueError(f"models must not repeat a name, got {models}")
    cache: dict = {}
    own = {m: dict((per_model or {}).get(m) or {}) for m in models}
    base = {m: own[m].pop("model", m) for m in models}  # the catalogue model a (variant) name trains
    tasked = [m for m in models if base[m] == "ldtm" or model_kind(base[m]) not in TREE_KINDS]
    # fold predictions (an inference pass over every validation block) only for the members of a stack of this batch
    stacked = set((tree or {}).get("stack_members") or ()) if any(model_kind(base[m]) == "stack" for m in models) else set()
    keep = {m: (m in stacked) if fold_predictions is None else bool(fold_predictions) for m in tasked}
    plans = [_plan(frames, base[m], ldtm, cache, {**kwargs, **own[m]}, progress=progress, fold_predictions=keep[m]) for m in tasked]
    done = dict(zip(tasked, _execute(plans, backend, progress), strict=True))
    for m in models:
        if m not in done:
            done[m] = walk_forward_model(frames, base[m], ldtm=ldtm, tree=tree, previous={**(previous or {}), **done}, backend=backend, progress=progress,
                                         **{**kwargs, **own[m]})
    return {m: done[m] for m in models}



@dataclass
class WalkForwardSettings:
    """The walk-forward settings a profile gives the training and backtest notebooks, in one object:
    built from the notebook's parameters with :meth:`from_params` (type- and range-checked), run for
    any model of the catalogue with :meth:`run`.

    Attributes (profile keys; units)
    --------------------------------
    test_start : first out-of-sample date (ISO string). test_size : trading days per test block (the
    model is retrained before each). val_fraction : share of each training window used for
    validation and early stopping. lookback : window of the position models, trading days.
    target_vol : annualised volatility target of the training target. hidden_size, num_layers,
    dropout, n_heads : architecture (``d_model = hidden_size`` for the Transformer). members,
    ensemble_method : the ensemble's members and weighting. epochs (maximum), patience, batch_size,
    lr, max_grad_norm, seed : optimisation. ldtm_hidden_size, ldtm_lookback, ldtm_sample_stride,
    ldtm_chunk_size : the per-ticker forecasters (``ldtm_chunk_size`` symbols per task, 0: a fold's
    symbols in one task). n_quantiles, rebalance_freq : the rankers' relevance grades and book
    quantiles, and their rebalance calendar (``"W"``, ``"M"``, ``"Q"``). tree_horizon : label
    horizon of the daily tree models, trading days (1 next day, 5 next week). tree_rounds,
    tree_early_stopping : boosting rounds and patience on validation. tree_threads : threads of
    LightGBM / XGBoost per fold task (0: the backend's task threads, ``--threads``, default 1).
    stack_members, stack_method : the members of ``tree_lstm_stack`` and its meta-learner (``nnls`` or ``sharpe``). features : the position
    models' feature specification (:func:`kit.features.feature_array`; default ``"dmn"``).
    variants : named variants of catalogue models on other features (:mod:`kit.training.variants`),
    trained and reported under their names.
    """

    test_start: str = "2016-01-01"
    test_size: int = 252
    val_fraction: float = 0.1
    lookback: int = 63
    target_vol: float = TARGET_VOL
    hidden_size: int = 20
    num_layers: int = 1
    dropout: float = 0.1
    n_heads: int = 4
    members: tuple = ("dmn_lstm", "linear", "mlp")
    ensemble_method: str = "stacked"
    epochs: int = 100
    patience: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    max_grad_norm: float = 1.0
    seed: int = 0
    ldtm_hidden_size: int = 128
    ldtm_lookback: int = 30
    ldtm_sample_stride: int = 5
    ldtm_chunk_size: int = 0
    n_quantiles: int = 10
    rebalance_freq: str = "M"
    tree_horizon: int = 1
    tree_rounds: int = 500
    tree_early_stopping: int = 50
    tree_threads: int = 0
    stack_members: tuple = ("dmn_lstm", "xgb_direction")
    stack_method: str = "nnls"
    features: str = "dmn"
    variants: dict = field(default_factory=dict)

    _RULES = {
        "test_size": (int, 1, None), "val_fraction": (float, 1e-9, 0.5), "lookback": (int, 1, None), "target_vol": (float, 1e-9, None),
        "hidden_size": (int, 1, None), "num_layers": (int, 1, None), "dropout": (float, 0.0, 0.999999), "n_heads": (int, 1, None),
        "epochs": (int, 1, None), "patience": (int, 1, None), "batch_size": (int, 1, None), "lr": (float, 1e-12, None),
        "max_grad_norm": (float, 1e-12, None), "seed": (int, 0, None), "ldtm_hidden_size": (int, 1, None), "ldtm_lookback": (int, 1, None),
        "ldtm_sample_stride": (int, 1, None), "ldtm_chunk_size": (int, 0, None), "n_quantiles": (int, 2, None),
        "tree_horizon": (int, 1, None), "tree_rounds": (int, 1, None), "tree_early_stopping": (int, 1, None), "tree_threads": (int, 0, None),
    }

    @classmethod
    def from_params(cls, params, where: str = "walk-forward settings") -> WalkForwardSettings:
        """Pick this class's fields from ``params`` (e.g. a notebook's ``globals()``; other keys are
        ignored) and check each value's type and range.

        Raises
        ------
        ValueError
            A value of the wrong type or out of range (names the key, the value and the rule), an
            unparseable ``test_start``, an unknown member or ensemble method.
        """
        import dataclasses

        kw = {f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params}
        for key, (typ, lo, hi) in cls._RULES.items():
            if key not in kw:
                continue
            v = kw[key]
            ok_type = isinstance(v, int) and not isinstance(v, bool) if typ is int else isinstance(v, int | float) and not isinstance(v, bool)
            if not ok_type:
                raise ValueError(f"{where}: {key} must be {'an integer' if typ is int else 'a number'}, got {v!r}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{where}: {key} must be {rng}, got {v!r}")
            kw[key] = typ(v)
        if "test_start" in kw:
            try:
                pd.Timestamp(kw["test_start"])
            except (ValueError, TypeError):
                raise ValueError(f"{where}: test_start must be a date (YYYY-MM-DD), got {kw['test_start']!r}") from None
            kw["test_start"] = str(kw["test_start"])
        if "members" in kw:
            m = kw["members"]
            if isinstance(m, str) or not all(x in POSITION_MODELS for x in m):
                raise ValueError(f"{where}: members must be a list of position models {list(POSITION_MODELS)}, got {m!r}")
            kw["members"] = tuple(m)
        if kw.get("ensemble_method", "stacked") not in ("equal", "inverse_loss", "stacked"):
            raise ValueError(f"{where}: ensemble_method must be 'equal', 'inverse_loss' or 'stacked', got {kw['ensemble_method']!r}")
        from ..features import REBALANCE_FREQUENCIES

        if kw.get("rebalance_freq", "M") not in REBALANCE_FREQUENCIES:
            raise ValueError(f"{where}: rebalance_freq must be one of {REBALANCE_FREQUENCIES}, got {kw['rebalance_freq']!r}")
        if kw.get("stack_method", "nnls") not in ("nnls", "sharpe"):
            raise ValueError(f"{where}: stack_method must be 'nnls' or 'sharpe', got {kw['stack_method']!r}")
        if "stack_members" in kw:
            m = kw["stack_members"]
            allowed = list(POSITION_MODELS) + [n for n, v in TREE_MODELS.items() if v[2] not in ("rank", "cs_regression")]
            if isinstance(m, str) or len(m) < 2 or not all(x in allowed for x in m):
                raise ValueError(f"{where}: stack_members must list at least 2 of {allowed}, got {m!r}")
            kw["stack_members"] = tuple(m)
        from ..features import parse_feature_spec
        from .variants import parse_variants

        if "features" in kw:
            try:
                kw["features"] = "+".join(parse_feature_spec(kw["features"]))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        if "variants" in kw:
            kw["variants"] = parse_variants(kw["variants"], where=f"{where}: variants")
        return cls(**kw)

    def variant(self, name: str):
        """What model name ``name`` trains (:func:`kit.training.variants.resolve_model`): its
        catalogue model, features and report label."""
        from .variants import resolve_model

        return resolve_model(name, self.variants, self.features)

    def label(self, name: str) -> str:
        """The report label of model name ``name`` (a variant's shows its features)."""
        return self.variant(name).label

    def train_config(self, **overrides) -> TrainConfig:
        """The :class:`TrainConfig` of these settings, with ``overrides`` (e.g. searched values)."""
        base = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "max_grad_norm": self.max_grad_norm,
                "patience": self.patience, "seed": self.seed}
        base.update({k: v for k, v in overrides.items() if k in base})
        return TrainConfig(**base)

    def tree_settings(self) -> dict:
        """The ``tree`` settings of :func:`walk_forward_model` (tree, ranker and stack models)."""
        return {"horizon": self.tree_horizon, "n_quantiles": self.n_quantiles, "rebalance_freq": self.rebalance_freq,
                "n_estimators": self.tree_rounds, "early_stopping_rounds": self.tree_early_stopping, "threads": self.tree_threads or None,
                "stack_members": self.stack_members, "stack_method": self.stack_method}

    def _kwargs(self, hyper: dict | None, checkpoint_dir, data_sha256: str, membership=None) -> dict:
        h = {"hidden_size": self.hidden_size, "dropout": self.dropout, **(hyper or {})}
        return dict(
            membership=membership,
            members=self.members, ensemble_method=self.ensemble_method, n_heads=self.n_heads, test_start=self.test_start,
            test_size=self.test_size, val_fraction=self.val_fraction, lookback=self.lookback, target_vol=self.target_vol,
            hidden_size=h["hidden_size"], num_layers=self.num_layers, dropout=h["dropout"], train=self.train_config(**(hyper or {})),
            checkpoint_dir=checkpoint_dir, data_sha256=data_sha256,
        )

    def _ldtm(self) -> dict:
        return {"hidden_size": self.ldtm_hidden_size, "lookback": self.ldtm_lookback, "sample_stride": self.ldtm_sample_stride,
                "chunk_size": self.ldtm_chunk_size}

    def run(self, frames: dict, name: str, *, hyper: dict | None = None, checkpoint_dir=None, data_sha256: str = "",
            progress: bool = True, backend=None, membership: pd.DataFrame | None = None,
            previous: dict | None = None) -> WalkForwardResult:
        """Train model ``name`` walk-forward on ``frames`` (:func:`walk_forward_model`) with these
        settings; ``hyper`` overrides ``hidden_size``, ``dropout``, ``batch_size``, ``lr`` and
        ``max_grad_norm`` (e.g. a search's best parameters); ``backend`` runs the tasks (default
        serial; see :func:`walk_forward`); ``membership`` restricts every decision date to that
        day's index members; ``previous`` (name -> result of this run) lets a stack reuse members
        trained already. A variant's name (:mod:`kit.training.variants`) trains its model on its
        features, with its checkpoints in a folder of its own; ``result.config["variant"]`` names it."""
        return self.run_models(frames, [name], hypers={name: hyper} if hyper else None, checkpoint_dir=checkpoint_dir,
                               data_sha256=data_sha256, progress=progress, backend=backend, membership=membership,
                               previous=previous, fold_predictions=True)[name]

    def run_models(self, frames: dict, names, *, hypers: dict | None = None, checkpoint_dir=None, data_sha256: str = "",
                   progress: bool = True, backend=None, membership: pd.DataFrame | None = None, previous: dict | None = None,
                   fold_predictions: bool | None = None) -> dict:
        """Train every model in ``names`` with these settings as one batch of tasks
        (:func:`walk_forward_models`); ``hypers`` maps a model name to its overrides (as ``hyper``
        of :meth:`run`); variants train their model on their features (checkpoints in a folder
        named after the variant, ``config["variant"]`` set); ``previous`` results are reused by a
        stack; ``fold_predictions`` as :func:`walk_forward_models` (:meth:`run` keeps them, so
        that a stack trained later can reuse the result). Each model's positions, checkpoints and
        logs equal :meth:`run`'s. Returns name -> result."""
        names = list(names)
        base = self._kwargs(None, checkpoint_dir, data_sha256, membership)
        per_model = {}
        for n in names:
            v = self.variant(n)
            own = {"features": v.features}
            if v.model != n:
                own["model"] = v.model
            if v.is_variant and checkpoint_dir is not None:
                own["checkpoint_dir"] = Path(checkpoint_dir) / n
            hyper = (hypers or {}).get(n)
            if hyper:
                kw = self._kwargs(hyper, checkpoint_dir, data_sha256)
                own.update({k: v for k, v in kw.items() if k in ("hidden_size", "dropout", "train")})
            per_model[n] = own
        out = walk_forward_models(frames, names, per_model=per_model, ldtm=self._ldtm(), tree=self.tree_settings(), backend=backend,
                                  progress=progress, previous=previous, fold_predictions=fold_predictions, **base)
        for n in names:
            v = self.variant(n)
            if v.is_variant:
                out[n].config["variant"] = n
                h = out[n].history
                if h is not None and "model" in h:  # the variant's curves under its own name
                    out[n].history = h.assign(model=h["model"].where(h["model"] != v.model, n))
        return {n: out[n] for n in names}
