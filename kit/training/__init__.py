"""Training: walk-forward splits (:mod:`.splits`), the Trainer (:mod:`.trainer`), batched universe
training of per-ticker models (:mod:`.batched`), tasks and the serial runner (:mod:`.tasks`),
walk-forward experiments (:mod:`.walk_forward`) and what they return (:mod:`.results`),
gradient-boosted trees, rankers and stacking (:mod:`.trees`), foundation models on the
walk-forward, zero-shot and fine-tuned (:mod:`.foundation`), hyperparameter search
(:mod:`.search`), interpretation (:mod:`.interpret`) and model variants on other features
(:mod:`.variants`)."""

from .batched import UniverseFit, train_universe
from .foundation import (
    FineTuneConfig,
    FoundationRun,
    FoundationSettings,
    FoundationWalkForwardResult,
    fine_tune,
    walk_forward_foundation,
)
from .interpret import explain_transformer
from .search import SEARCH_SPACE, SearchResult, search_hyperparameters
from .splits import LeakageError, Split, count_leakage, walk_forward_splits
from .tasks import SerialRunner, Task, TaskOutcome, TaskRunner, resolve_runner, run_task
from .trainer import EarlyStopping, TrainConfig, Trainer, TrainResult, amp_settings, resolve_device, set_seed
from .trees import (
    POH_2021,
    TabularDataset,
    fit_stacker,
    fit_tree,
    fold_leakage,
    fold_rows,
    tabular_dataset,
    walk_forward_ranker,
    walk_forward_stack,
    walk_forward_tree_lstm_stack,
    walk_forward_tree_model,
    walk_forward_trees,
)
from .variants import ModelVariant, parse_variants, resolve_model
from .walk_forward import (
    FoldPredictions,
    WalkForwardResult,
    WalkForwardSettings,
    ldtm_positions,
    position_scale,
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
    "FineTuneConfig",
    "FoundationRun",
    "FoundationSettings",
    "FoundationWalkForwardResult",
    "fine_tune",
    "walk_forward_foundation",
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
    "FoldPredictions",
    "WalkForwardResult",
    "POH_2021",
    "TabularDataset",
    "fit_stacker",
    "fit_tree",
    "fold_leakage",
    "fold_rows",
    "tabular_dataset",
    "walk_forward_ranker",
    "walk_forward_stack",
    "walk_forward_tree_lstm_stack",
    "walk_forward_tree_model",
    "walk_forward_trees",
    "WalkForwardSettings",
    "ldtm_positions",
    "position_scale",
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
    "ModelVariant",
    "parse_variants",
    "resolve_model",
]
