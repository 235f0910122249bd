"""Hyperparameter search with optuna, on data before the first test date only.

The space is the one of Lim, Zohren & Roberts (2019, table 3) and Wood et al. (2021): dropout
0.1-0.5, hidden size 5-160 (the papers' grid 5, 10, 20, 40, 80, 160), minibatch 64/128/256,
learning rate 1e-4 to 1e-1 (log scale), maximum gradient norm 1e-2 to 1e2 (log scale). The objective
is the validation Sharpe ratio of the first walk-forward fold's training window (every date before
``search_until``, its last ``val_fraction`` being the validation set), so no test date is ever seen.
Hopeless trials are pruned (optuna's median pruner on the per-epoch validation Sharpe). Every trial
is stored in an optuna SQLite database (``storage``) and returned as a table; the number of trials
is what the deflated Sharpe ratio needs as "configurations tried".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..features import feature_array, make_sequences, next_day_target
from ..models import make_model
from .splits import count_leakage, walk_forward_splits
from .trainer import TrainConfig, Trainer, set_seed

__all__ = ["SEARCH_SPACE", "SearchResult", "search_hyperparameters"]

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
    storage : optuna storage URL, e.g. ``sqlite:///reports/runs/<id>/artifacts/search.db``; every
        trial is kept there (``None``: in memory).

    Returns
    -------
    SearchResult

    Raises
    ------
    ValueError
        ``n_trials < 1`` or too little data before ``search_until``.
    """
    import optuna

    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    fa = feature_array(features, close)
    X, names = fa.values.astype(np.float32), fa.names
    target, _ = next_day_target(close, target_vol=target_vol)
    y = target.to_numpy(dtype="float64")
    if membership is not None:  # point-in-time: no target where the symbol is not an index member
        member = pd.DataFrame(membership).reindex(index=close.index, columns=close.columns, fill_value=False)
        y = np.where(member.fillna(False).to_numpy(dtype=bool), y, np.nan)
    split = walk_forward_splits(close.index, search_until, 1, None, val_fraction, horizon=1)[0]
    valid = np.isfinite(X).all(axis=-1) & np.isfinite(y)
    if count_leakage(split, valid):
        raise RuntimeError("search split leaks")  # walk_forward_splits never does; checked anyway
    tr = make_sequences(X, y, *split.train, lookback)
    va = make_sequences(X, y, *split.val, min(lookback, split.val[1] - split.val[0]))

    def objective(trial: optuna.Trial) -> float:
        params = {
            "dropout": trial.suggest_float("dropout", *SEARCH_SPACE["dropout"]),
            "hidden_size": trial.suggest_categorical("hidden_size", list(SEARCH_SPACE["hidden_size"])),
            "batch_size": trial.suggest_categorical("batch_size", list(SEARCH_SPACE["batch_size"])),
            "lr": trial.suggest_float("lr", *SEARCH_SPACE["lr"], log=True),
            "max_grad_norm": trial.suggest_float("max_grad_norm", *SEARCH_SPACE["max_grad_norm"], log=True),
        }
        set_seed(seed)
        net = make_model(model, len(names), params["hidden_size"], params["dropout"], num_layers, n_heads, kind="position")
        cfg = TrainConfig(epochs=epochs, patience=patience, batch_size=params["batch_size"], lr=params["lr"], max_grad_norm=params["max_grad_norm"], seed=seed)

        def report(epoch, val_loss):
            trial.report(-val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = Trainer(cfg).fit(net, tr, va, on_epoch_end=report)
        return -result.best_val_loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
        load_if_exists=True,
    )
    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    trials = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError(f"no trial completed out of {len(study.trials)}")
    return SearchResult(dict(study.best_params), float(study.best_value), trials, len(study.trials), storage)

