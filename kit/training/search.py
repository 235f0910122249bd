"""Hyperparameter search with optuna, on data before the first test date only.

The space is the one of Lim, Zohren & Roberts (2019, table 3) and Wood et al. (2021): dropout
0.1-0.5, hidden size 5-160 (the papers' grid 5, 10, 20, 40, 80, 160), minibatch 64/128/256,
learning rate 1e-4 to 1e-1 (log scale), maximum gradient norm 1e-2 to 1e2 (log scale). The objective
is the validation Sharpe ratio of the first walk-forward fold's training window (every date before
``search_until``, its last ``val_fraction`` being the validation set), so no test date is ever seen.
Hopeless trials are pruned (optuna's median pruner on the per-epoch validation Sharpe). Every trial
is stored in an optuna database (``storage``: SQLite, or PostgreSQL for a search spread over several
machines) and returned as a table; the number of trials is what the deflated Sharpe ratio needs as
"configurations tried".

Each trial is a task (:func:`run_trial`) run by a backend (:mod:`kit.training.tasks`,
:mod:`kit.exec`): the driver asks the study for as many trials as the backend runs at once (one for
the serial backend, which therefore reproduces optuna's own ``study.optimize`` loop exactly), the
tasks train and report each epoch's validation Sharpe to the shared study (so the pruner compares
them with every other trial's), and the driver tells the study each outcome.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data import align_membership
from ..features import feature_array, make_sequences, next_day_target
from ..models import make_model
from .splits import count_leakage, walk_forward_splits
from .tasks import Task, resolve_runner
from .trainer import TrainConfig, Trainer, set_seed

__all__ = ["SEARCH_SPACE", "SearchResult", "TrialArgs", "run_trial", "search_hyperparameters"]

SEARCH_SPACE = {
    "dropout": (0.1, 0.5),
    "hidden_size": (5, 10, 20, 40, 80, 160),
    "batch_size": (64, 128, 256),
    "lr": (1e-4, 1e-1),
    "max_grad_norm": (1e-2, 1e2),
}


@dataclass
class SearchResult:
    """Best parameters, every trial (one row each: number, state, value = validation Sharpe,
    parameters), and the number of trials run (completed and pruned)."""

    best_params: dict
    best_val_sharpe: float
    trials: pd.DataFrame
    n_trials: int
    storage: str | None


PRUNER = {"n_startup_trials": 3, "n_warmup_steps": 3}
"""Settings of optuna's ``MedianPruner`` for every search."""


def _distributions() -> dict:
    import optuna

    d = optuna.distributions
    return {
        "dropout": d.FloatDistribution(*SEARCH_SPACE["dropout"]),
        "hidden_size": d.CategoricalDistribution(list(SEARCH_SPACE["hidden_size"])),
        "batch_size": d.CategoricalDistribution(list(SEARCH_SPACE["batch_size"])),
        "lr": d.FloatDistribution(*SEARCH_SPACE["lr"], log=True),
        "max_grad_norm": d.FloatDistribution(*SEARCH_SPACE["max_grad_norm"], log=True),
    }


def _rdb(storage):
    """An optuna storage for a URL (SQLite with a 60 s busy timeout: several processes write), or
    the storage object itself."""
    import optuna

    if not isinstance(storage, str):
        return storage
    kw = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(storage, engine_kwargs=kw)


@dataclass(frozen=True)
class TrialArgs:
    """One search trial (:func:`run_trial`): the study (``storage`` URL or, for the serial backend,
    the storage object; ``study_name``), the trial's id and number, its sampled ``params``, and the
    model and training settings shared by all trials. ``shared`` holds ``{"train": (X, y, mask),
    "val": (X, y, mask)}``."""

    storage: Any
    study_name: str
    trial_id: int
    number: int
    params: tuple
    model: str
    n_features: int
    num_layers: int
    n_heads: int
    epochs: int
    patience: int
    seed: int


def run_trial(args: TrialArgs, shared: dict) -> dict:
    """Train one trial's model and return ``{"state": "complete" | "pruned", "value": validation
    Sharpe ratio (best epoch; last reported one when pruned), "epochs": n}``: the pure task of a
    search. Each epoch's validation Sharpe ratio is reported to the study, and the study's median
    pruner may stop the trial (every trial of the study, wherever it runs, is compared). Seeded with
    the search's ``seed`` (the same initialisation for every trial, as the objective always had).
    Writes only the trial's intermediate values to the study."""
    import optuna

    study = optuna.load_study(study_name=args.study_name, storage=_rdb(args.storage),
                              sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.MedianPruner(**PRUNER))
    trial = optuna.trial.Trial(study, args.trial_id)
    params = dict(args.params)
    set_seed(args.seed)
    net = make_model(args.model, args.n_features, params["hidden_size"], params["dropout"], args.num_layers, args.n_heads, kind="position")
    cfg = TrainConfig(epochs=args.epochs, patience=args.patience, batch_size=params["batch_size"], lr=params["lr"],
                      max_grad_norm=params["max_grad_norm"], seed=args.seed)
    last = {"epoch": -1, "value": None}

    def report(epoch, val_loss):
        trial.report(-val_loss, epoch)
        last.update(epoch=epoch, value=-val_loss)
        if trial.should_prune():
            raise optuna.TrialPruned()

    try:
        result = Trainer(cfg).fit(net, shared["train"], shared["val"], on_epoch_end=report)
    except optuna.TrialPruned:
        return {"state": "pruned", "value": last["value"], "epochs": last["epoch"] + 1}
    return {"state": "complete", "value": -result.best_val_loss, "epochs": result.epochs_run}


def _concurrency(runner) -> int:
    d = runner.describe()
    if d.get("backend") == "serial":
        return 1
    if d.get("workers"):
        return int(d["workers"])
    return max(1, int(d.get("cpus", 1)) // max(1, int(d.get("threads", 1))))


def check_search_storage(storage, nodes: int) -> None:
    """Refuse a study storage that the machines of a search cannot share.

    Raises
    ------
    ValueError
        ``nodes > 1`` and ``storage`` is in memory (``None``) or a SQLite file (one machine's file;
        SQLite's locking does not hold across machines): the message says to set ``KIT_DB_URL`` to a
        PostgreSQL URL.
    """
    if nodes > 1 and (storage is None or not isinstance(storage, str) or storage.startswith("sqlite")):
        shown = "in memory" if storage is None else str(storage)
        raise ValueError(f"a search on {nodes} nodes needs a study storage every node can reach; got {shown}. "
                         "Set KIT_DB_URL to a PostgreSQL URL (e.g. postgresql+psycopg://user@host/kit): SQLite is one machine's file")


def search_hyperparameters(
    close: pd.DataFrame,
    *,
    model: str = "dmn_lstm",
    search_until,
    n_trials: int = 20,
    val_fraction: float = 0.1,
    lookback: int = 63,
    target_vol: float = 0.15,
    epochs: int = 30,
    patience: int = 5,
    n_heads: int = 4,
    num_layers: int = 1,
    seed: int = 0,
    storage: str | None = None,
    study_name: str = "kit-search",
    timeout: float | None = None,
    backend=None,
    membership: pd.DataFrame | None = None,
    features: str = "dmn",
) -> SearchResult:
    """Search a position model's hyperparameters on dates before ``search_until``.

    Parameters
    ----------
    close : (T, N) adjusted closes.
    membership : optional (T, N) bool point-in-time index membership; non-members have no target on
        those dates (as in :func:`kit.training.walk_forward`).
    model : a position model name (:data:`kit.training.POSITION_MODELS`).
    features : its feature specification (:func:`kit.features.feature_array`; default the DMN set).
    search_until : the first out-of-sample date; only earlier dates are used.
    n_trials : trials to run (optuna TPE sampler seeded with ``seed``).
    storage : optuna storage URL, e.g. ``sqlite:///reports/runs/<id>/artifacts/search.db`` or a
        PostgreSQL URL; every trial is kept there (``None``: in memory with the serial backend, a
        temporary SQLite file with a local pool).
    timeout : seconds after which no new trials are started.
    backend : runs the trials (:func:`kit.training.tasks.resolve_runner`): serial (default; the
        same trials as ``study.optimize``), or a :func:`kit.exec.make_backend` runner, which runs
        as many trials at once as it has workers. A backend on several nodes needs a storage all
        of them reach (PostgreSQL).

    Returns
    -------
    SearchResult

    Raises
    ------
    ValueError
        ``n_trials < 1``, too little data before ``search_until``, or a SQLite/in-memory storage
        for a backend on several nodes (:func:`check_search_storage`).
    """
    import optuna

    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    runner = resolve_runner(backend)
    check_search_storage(storage, int(getattr(runner, "nodes", 1)))
    fa = feature_array(features, close)
    X, names = fa.values.astype(np.float32), fa.names
    target, _ = next_day_target(close, target_vol=target_vol)
    y = target.to_numpy(dtype="float64")
    if membership is not None:  # point-in-time: no target where the symbol is not an index member
        y = np.where(align_membership(membership, close).to_numpy(dtype=bool), y, np.nan)
    split = walk_forward_splits(close.index, search_until, 1, None, val_fraction, horizon=1)[0]
    valid = np.isfinite(X).all(axis=-1) & np.isfinite(y)
    if count_leakage(split, valid):
        raise RuntimeError("search split leaks")  # walk_forward_splits never does; checked anyway
    shared = {"train": make_sequences(X, y, *split.train, lookback),
              "val": make_sequences(X, y, *split.val, min(lookback, split.val[1] - split.val[0]))}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    width = _concurrency(runner)
    tmp = None
    if storage is None and width > 1:  # several local processes: a throwaway SQLite file they all open
        import tempfile

        tmp = tempfile.mkdtemp(prefix="kit-search-")
        store = _rdb(f"sqlite:///{os.path.join(tmp, 'search.db')}")
    else:
        store = _rdb(storage) if storage is not None else optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(**PRUNER),
        load_if_exists=True,
    )
    task_storage = storage if isinstance(storage, str) else (store.url if tmp else store)
    dists = _distributions()
    t_start, done = time.monotonic(), 0
    try:
        while done < n_trials and (timeout is None or time.monotonic() - t_start < timeout):
            batch = [study.ask(fixed_distributions=dists) for _ in range(min(width, n_trials - done))]
            tasks = [
                Task(run_trial, TrialArgs(task_storage, study_name, t._trial_id, t.number, tuple(t.params.items()), model, len(names),
                                          num_layers, n_heads, epochs, patience, seed), f"trial/{study_name}/{t.number}")
                for t in batch
            ]
            for trial, out in zip(batch, runner.map(tasks, shared), strict=True):
                v = out.value
                if v["state"] == "pruned":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, v["value"])
            done += len(batch)
        trials = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            raise RuntimeError(f"no trial completed out of {len(study.trials)}")
        return SearchResult(dict(study.best_params), float(study.best_value), trials, len(study.trials), storage)
    finally:
        if tmp is not None:
            import shutil

            if hasattr(store, "engine"):
                store.engine.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
