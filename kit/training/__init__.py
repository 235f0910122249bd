"""Training: walk-forward splits (:mod:`.splits`), the Trainer (:mod:`.trainer`), batched universe
training of per-ticker models (:mod:`.batched`), walk-forward experiments (:mod:`.walk_forward`),
foundation models on the walk-forward, zero-shot and fine-tuned (:mod:`.foundation`),
hyperparameter search (:mod:`.search`) and interpretation (:mod:`.interpret`)."""

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
from .trainer import EarlyStopping, TrainConfig, Trainer, TrainResult, amp_settings, resolve_device, set_seed
from .walk_forward import (
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
    "WalkForwardResult",
    "WalkForwardSettings",
    "ldtm_positions",
    "position_scale",
    "predict_forecasts",
    "predict_positions",
    "walk_forward",
    "walk_forward_dmn",
    "walk_forward_ldtm",
    "walk_forward_model",
]
