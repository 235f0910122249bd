"""The model catalogue: every model of the kit in one table, with its label, kind, configuration class
and factory. Adding a model is one entry here plus its module.

Kinds: ``position`` models map a window ``(B, L, F)`` to positions ``(B, L)`` in [-1, 1] and train
with the Sharpe loss; ``forecaster`` models map ``(B, L, F)`` to forward returns ``(B, H)`` per
horizon and train with the multi-horizon MSE; ``ensemble`` combines position models
(:class:`kit.models.ensemble.PositionEnsemble`); ``tree`` models are gradient-boosted trees on
tabular ``(date, symbol)`` rows whose outputs become positions in [-1, 1] by a documented rule;
``ranker`` models score each rebalance date's cross-section and trade its top quantile against its
bottom one (:mod:`kit.models.trees`); ``stack`` combines a tree and an LSTM with weights fitted on
validation blocks (seed 004). Tree, ranker and stack models have no torch module: ``make`` and
``build`` are None, :mod:`kit.training.trees` fits them and their checkpoints hold the boosters as
text (:func:`kit.models.checkpoints.save_tree`). ``foundation`` models are pretrained forecasters
read from local weights (:mod:`kit.models.foundation`): prices ``(B, L)`` to return quantiles
``(B, H, 3)``, used zero-shot or fine-tuned with the pinball loss, so they have no ``make`` from the
flat hyperparameters; their ``build`` rebuilds a fine-tuned checkpoint's module from its config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .baselines import BaselineConfig, PerStepBaseline
from .dmn_lstm import DeepMomentumLSTM, DMNConfig
from .foundation import build_module
from .ldtm import LDTMConfig, LDTMForecaster
from .transformer import MomentumTransformer, TransformerConfig
from .trees import TREE_MODELS, TreeConfig

__all__ = [
    "ModelSpec",
    "CATALOGUE",
    "MODEL_NAMES",
    "MODEL_LABELS",
    "POSITION_MODELS",
    "FOUNDATION_MODELS",
    "TREE_KINDS",
    "model_spec",
    "model_kind",
    "make_model",
    "build_model",
]


@dataclass(frozen=True)
class ModelSpec:
    """One model of the catalogue.

    Attributes
    ----------
    name : the key used in profiles, registries and checkpoints (``config["model"]``).
    label : the name shown in reports.
    kind : ``"position"``, ``"forecaster"``, ``"ensemble"``, ``"tree"``, ``"ranker"``, ``"stack"``
        or ``"foundation"``.
    config : the configuration dataclass (``None`` for the ensemble, the stack and the foundation
        models, whose config is a ``transformers`` class of the optional extra).
    make : ``make(n_features, hidden_size, dropout, num_layers, n_heads) -> nn.Module`` from the
        profiles' flat hyperparameters (``None`` for the ensemble, built from its members, for the
        tree kinds, fitted by :mod:`kit.training.trees`, and for the foundation models, loaded from
        local weights).
    build : ``build(config_dict_without_model_key) -> nn.Module``, rebuilding a checkpoint's model
        (``None`` for the ensemble and the tree kinds).
    """

    name: str
    label: str
    kind: str
    config: type | None
    make: Callable | None
    build: Callable | None


def _ldtm_build(cfg: dict) -> nn.Module:
    cfg = dict(cfg)
    if "horizons" in cfg:
        cfg["horizons"] = tuple(cfg["horizons"])
    return LDTMForecaster(LDTMConfig(**cfg))


CATALOGUE: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "dmn_lstm", "DMN (LSTM)", "position", DMNConfig,
            lambda n, hidden_size=20, dropout=0.1, num_layers=1, n_heads=4: DeepMomentumLSTM(DMNConfig(n, hidden_size, num_layers, dropout)),
            lambda cfg: DeepMomentumLSTM(DMNConfig(**cfg)),
        ),
        ModelSpec(
            "momentum_transformer", "Momentum Transformer", "position", TransformerConfig,
            lambda n, hidden_size=20, dropout=0.1, num_layers=1, n_heads=4: MomentumTransformer(TransformerConfig(n, hidden_size, n_heads, dropout)),
            lambda cfg: MomentumTransformer(TransformerConfig(**cfg)),
        ),
        ModelSpec(
            "linear", "Linear", "position", BaselineConfig,
            lambda n, hidden_size=20, dropout=0.1, num_layers=1, n_heads=4: PerStepBaseline(BaselineConfig(n, 0, 0.0)),
            lambda cfg: PerStepBaseline(BaselineConfig(**cfg)),
        ),
        ModelSpec(
            "mlp", "MLP", "position", BaselineConfig,
            lambda n, hidden_size=20, dropout=0.1, num_layers=1, n_heads=4: PerStepBaseline(BaselineConfig(n, hidden_size, dropout)),
            lambda cfg: PerStepBaseline(BaselineConfig(**cfg)),
        ),
        ModelSpec(
            "ldtm", "LDTM", "forecaster", LDTMConfig,
            lambda n, hidden_size=128, dropout=0.2, num_layers=2, n_heads=4: LDTMForecaster(LDTMConfig(n, hidden_size, num_layers, dropout)),
            _ldtm_build,
        ),
        ModelSpec("ensemble", "Ensemble", "ensemble", None, None, None),
        *(
            ModelSpec(name, label, "ranker" if task in ("rank", "cs_regression") else "tree", TreeConfig, None, None)
            for name, (label, _library, task) in TREE_MODELS.items()
        ),
        ModelSpec("tree_lstm_stack", "Stack: XGBoost + DMN LSTM", "stack", None, None, None),
        ModelSpec("chronos_bolt", "Chronos-Bolt", "foundation", None, None, lambda cfg: build_module("chronos_bolt", cfg)),
        ModelSpec("timesfm", "TimesFM 2.5", "foundation", None, None, lambda cfg: build_module("timesfm", cfg)),
    )
}

MODEL_NAMES = tuple(n for n, s in CATALOGUE.items() if s.kind not in ("ensemble", "stack"))
"""Every single (non-ensemble, non-stack) model."""
TREE_KINDS = ("tree", "ranker", "stack")
"""Kinds trained by :mod:`kit.training.trees` rather than the torch Trainer."""
MODEL_LABELS = {n: s.label for n, s in CATALOGUE.items()}
"""name -> report label, ensemble included."""
POSITION_MODELS = tuple(n for n, s in CATALOGUE.items() if s.kind == "position")
"""The models trained with the Sharpe loss on the DMN inputs (ensemble members)."""
FOUNDATION_MODELS = tuple(n for n, s in CATALOGUE.items() if s.kind == "foundation")
"""The pretrained forecasters read from local weights (:mod:`kit.models.foundation`)."""


def model_spec(name: str) -> ModelSpec:
    """The catalogue entry of ``name``.

    Raises
    ------
    ValueError
        Unknown name (lists the known ones).
    """
    if name not in CATALOGUE:
        raise ValueError(f"model {name!r} is unknown; known: {list(CATALOGUE)}")
    return CATALOGUE[name]


def model_kind(name: str) -> str:
    """The catalogue kind of ``name`` (:class:`ModelSpec`). Raises ``ValueError`` for an unknown name."""
    return model_spec(name).kind


def make_model(
    name: str, n_features: int, hidden_size: int = 20, dropout: float = 0.1, num_layers: int = 1, n_heads: int = 4, kind: str | None = None
) -> nn.Module:
    """A fresh model from one flat set of hyperparameters: ``dmn_lstm`` (LSTM hidden size, layers,
    dropout), ``momentum_transformer`` (``d_model = hidden_size``, ``n_heads``, dropout), ``mlp``
    (one hidden layer of ``hidden_size``), ``linear``, ``ldtm``. ``kind`` (e.g. ``"position"``)
    refuses a model of another kind.

    Raises
    ------
    ValueError
        Unknown name, a model not of ``kind``, the ensemble (built from trained members, not
        from hyperparameters) or a foundation model (loaded from local weights).
    """
    spec = model_spec(name)
    if kind is not None and spec.kind != kind:
        known = [n for n, s in CATALOGUE.items() if s.kind == kind]
        raise ValueError(f"model {name!r} is not a {kind} model; known: {known}")
    if spec.make is None:
        if spec.kind in TREE_KINDS:
            raise ValueError(f"model {name!r} is a {spec.kind} model without a torch module: fit it with kit.training.trees")
        how = "loaded from local weights (kit.models.foundation.load_adapter)" if spec.kind == "foundation" else "built from trained members"
        raise ValueError(f"model {name!r} is {how}, not from hyperparameters")
    return spec.make(n_features, hidden_size, dropout, num_layers, n_heads)


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from the ``config`` dict stored in a checkpoint (``config["model"]`` names a
    catalogue entry; the other keys are its configuration class's fields).

    Raises
    ------
    ValueError
        Unknown or missing ``config['model']``, or an ensemble config (load those with
        :func:`kit.models.checkpoints.load_checkpoint`).
    """
    cfg = dict(config)
    name = cfg.pop("model", None)
    if name not in CATALOGUE or CATALOGUE[name].build is None:
        torch_models = tuple(n for n in MODEL_NAMES if CATALOGUE[n].build is not None)
        raise ValueError(f"config['model']={name!r} is not a known model with a torch module (the catalogue's: {torch_models})")
    return CATALOGUE[name].build(cfg)
