"""Training: walk-forward splits (:mod:`.splits`), the Trainer (:mod:`.trainer`), batched universe
training of per-ticker models (:mod:`.batched`), tasks and the serial runner (:mod:`.tasks`),
walk-forward experiments (:mod:`.walk_forward`),
hyperparameter search (:mod:`.search`) and interpretation (:mod:`.interpret`)."""

from .batched import UniverseFit, train_universe
from .interpret import explain_transformer
from .search import SEARCH_SPACE, SearchResult, search_hyperparameters
from .splits import LeakageError, Split, count_leakage, walk_forward_splits
from .tasks import SerialRunner, Task, TaskOutcome, TaskRunner, resolve_runner, run_task
from .trainer import EarlyStopping, TrainConfig, Trainer, TrainResult, amp_settings, resolve_device, set_seed
from .walk_forward import (
    WalkForwardResult,
    WalkForwardSettings,
    ldtm_positions,
    predict_forecasts,
    predict_positions,
    walk_forward,
    walk_forward_dmn,
    walk_forward_ldtm,
    walk_forward_model,
    walk_forward_models,
)

__all__ = [
    "UniverseFit",
    "train_universe",
    "explain_transformer",
    "SEARCH_SPACE",
    "SearchResult",
    "search_hyperparameters",
    "LeakageError",
    "Split",
    "count_leakage",
    "walk_forward_splits",
    "EarlyStopping",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "amp_settings",
    "resolve_device",
    "set_seed",
    "WalkForwardResult",
    "WalkForwardSettings",
    "ldtm_positions",
    "predict_forecasts",
    "predict_positions",
    "walk_forward",
    "walk_forward_dmn",
    "walk_forward_ldtm",
    "walk_forward_model",
    "walk_forward_models",
    "Task",
    "TaskOutcome",
    "TaskRunner",
    "SerialRunner",
    "run_task",
    "resolve_runner",
]
