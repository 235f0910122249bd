"""Training: walk-forward splits (:mod:`.splits`), the Trainer (:mod:`.trainer`), batched universe
training of per-ticker models (:mod:`.batched`), walk-forward experiments (:mod:`.walk_forward`),
hyperparameter search (:mod:`.search`), interpretation (:mod:`.interpret`) and model variants on other
features (:mod:`.variants`)."""

from .batched import UniverseFit, train_universe
from .interpret import explain_transformer
from .search import SEARCH_SPACE, SearchResult, search_hyperparameters
from .splits import LeakageError, Split, count_leakage, walk_forward_splits
from .trainer import EarlyStopping, TrainConfig, Trainer, TrainResult, amp_settings, resolve_device, set_seed
from .variants import ModelVariant, parse_variants, resolve_model
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
    "ModelVariant",
    "parse_variants",
    "resolve_model",
]
