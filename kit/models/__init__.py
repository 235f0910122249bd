"""Models: one module per family (:mod:`.dmn_lstm`, :mod:`.transformer`, :mod:`.baselines`,
:mod:`.ldtm`, :mod:`.ensemble`, gradient-boosted trees in :mod:`.trees`, the foundation-model
adapters :mod:`.foundation`), the catalogue of names, labels and factories (:mod:`.catalogue`),
losses (:mod:`.losses`), one safe save/load (:mod:`.checkpoints`) and export (:mod:`.export`).

Forward takes ``(batch, lookback, features)`` float32; position models return positions in [-1, 1]
of shape ``(batch, lookback)``; forecasters return forward returns ``(batch, horizons)``. The
foundation models are used through their adapters (:class:`.foundation.ForecasterAdapter`: prices
``(N, L)`` to return quantiles ``(N, H, 3)``); :mod:`.foundation` is imported as a module, not
re-exported here.
"""

from .baselines import BaselineConfig, PerStepBaseline
from .catalogue import (
    CATALOGUE,
    FOUNDATION_MODELS,
    MODEL_LABELS,
    MODEL_NAMES,
    POSITION_MODELS,
    TREE_KINDS,
    ModelSpec,
    build_model,
    make_model,
    model_kind,
    model_spec,
)
from .checkpoints import (
    CheckpointError,
    ForecasterBundle,
    load_checkpoint,
    read_payload,
    save_bundle,
    save_checkpoint,
    save_ensemble,
    save_foundation,
    save_stack,
    save_tree,
)
from .dmn_lstm import DeepMomentumLSTM, DMNConfig
from .ensemble import PositionEnsemble, ensemble_weights
from .ldtm import LDTMConfig, LDTMForecaster, window_minmax
from .losses import combined_loss, multi_horizon_mse, pinball_loss, sharpe_loss
from .transformer import (
    GatedResidualNetwork,
    InterpretableMultiHeadAttention,
    MomentumTransformer,
    TransformerConfig,
    VariableSelectionNetwork,
)
from .trees import TREE_MODELS, PositionStack, TreeConfig, TreeModel

__all__ = [
    "BaselineConfig",
    "PerStepBaseline",
    "CATALOGUE",
    "FOUNDATION_MODELS",
    "MODEL_LABELS",
    "MODEL_NAMES",
    "POSITION_MODELS",
    "TREE_KINDS",
    "TREE_MODELS",
    "PositionStack",
    "TreeConfig",
    "TreeModel",
    "model_kind",
    "ModelSpec",
    "build_model",
    "make_model",
    "model_spec",
    "CheckpointError",
    "ForecasterBundle",
    "load_checkpoint",
    "read_payload",
    "save_bundle",
    "save_checkpoint",
    "save_ensemble",
    "save_stack",
    "save_tree",
    "save_foundation",
    "DeepMomentumLSTM",
    "DMNConfig",
    "PositionEnsemble",
    "ensemble_weights",
    "LDTMConfig",
    "LDTMForecaster",
    "window_minmax",
    "combined_loss",
    "multi_horizon_mse",
    "pinball_loss",
    "sharpe_loss",
    "GatedResidualNetwork",
    "InterpretableMultiHeadAttention",
    "MomentumTransformer",
    "TransformerConfig",
    "VariableSelectionNetwork",
]
