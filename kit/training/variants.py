"""Model variants: a catalogue model trained on other inputs under its own name, so that one run can
compare, say, the Momentum Transformer with and without changepoint features in one table.

A profile declares them beside ``models`` (the notebooks' ``variants`` parameter)::

    features: dmn                      # the inputs of every position model (kit.features.spec)
    variants:
      momentum_transformer_cpd: {model: momentum_transformer, features: "dmn+cpd21+bocpd"}
    models: [momentum_transformer, momentum_transformer_cpd, ...]

A variant's name is used wherever a model's name is: its positions, its checkpoints (in a folder of
its own), its registry entry (its own versions and gate), its row in the backtest's table and the
count of configurations tried for the deflated Sharpe ratio. Its label is the base model's label
with its features, unless the profile gives one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..features import DEFAULT_FEATURES, parse_feature_spec
from ..models import CATALOGUE, MODEL_LABELS, POSITION_MODELS

__all__ = ["ModelVariant", "parse_variants", "resolve_model"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_KEYS = ("model", "features", "label")


@dataclass(frozen=True)
class ModelVariant:
    """What a model name in a profile trains.

    Attributes
    ----------
    name : the name in the profile (a catalogue model's own name, or a variant's).
    model : the catalogue model it trains.
    features : its feature specification (:func:`kit.features.feature_array`).
    label : the name shown in reports.
    is_variant : whether ``name`` is a variant (not a catalogue name).
    """

    name: str
    model: str
    features: str
    label: str
    is_variant: bool = False


def parse_variants(variants, where: str = "variants") -> dict[str, dict]:
    """Check a profile's ``variants`` mapping and return it normalised (``{name: {"model", "features",
    "label"}}``, ``features`` None when the variant keeps the run's features).

    Raises
    ------
    ValueError
        Not a mapping; a name that is not lower-case letters, digits and ``_`` (at most 64) or that
        is a catalogue model's name; an unknown key (named); a model that is not a position model or
        the ensemble; a bad feature specification or label.
    """
    if variants is None:
        return {}
    if not isinstance(variants, dict):
        raise ValueError(f"{where} must be a mapping of name -> {{model, features, label}}, got {variants!r}")
    out = {}
    for name, spec in variants.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{where}: variant name {name!r} must be lower-case letters, digits and _ (at most 64)")
        if name in CATALOGUE:
            raise ValueError(f"{where}: variant name {name!r} is a model of the catalogue; choose another name")
        if not isinstance(spec, dict):
            raise ValueError(f"{where}.{name} must be a mapping with 'model' (and 'features', 'label'), got {spec!r}")
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown:
            raise ValueError(f"{where}.{name}: unknown key(s) {unknown}; known: {list(_KEYS)}")
        model = spec.get("model")
        if model not in POSITION_MODELS + ("ensemble",):
            raise ValueError(f"{where}.{name}.model must be one of {list(POSITION_MODELS) + ['ensemble']}, got {model!r}")
        features = spec.get("features")
        if features is not None:
            try:
                features = "+".join(parse_feature_spec(features))
            except ValueError as exc:
                raise ValueError(f"{where}.{name}.features: {exc}") from None
        label = spec.get("label")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ValueError(f"{where}.{name}.label must be a non-empty string, got {label!r}")
        out[name] = {"model": model, "features": features, "label": label}
    return out


def resolve_model(name: str, variants: dict | None = None, features: str = DEFAULT_FEATURES) -> ModelVariant:
    """What ``name`` trains: a variant of ``variants`` (as :func:`parse_variants` returns), or the
    catalogue model of that name with the run's ``features``.

    The per-ticker forecaster ``ldtm`` keeps its own inputs (the ``ldtm`` feature set) whatever
    ``features`` says.

    Raises
    ------
    ValueError
        ``name`` is neither a variant nor a catalogue model.
    """
    variants = variants or {}
    if name in variants:
        v = variants[name]
        feats = v.get("features") or features
        label = v.get("label") or f"{MODEL_LABELS[v['model']]} ({feats})"
        return ModelVariant(name, v["model"], feats, label, True)
    if name not in CATALOGUE:
        raise ValueError(f"model {name!r} is neither a model of the catalogue {list(CATALOGUE)} nor a variant {sorted(variants)}")
    if name == "ldtm":
        return ModelVariant(name, name, "ldtm", MODEL_LABELS[name])
    label = MODEL_LABELS[name] if features == DEFAULT_FEATURES else f"{MODEL_LABELS[name]} ({features})"
    return ModelVariant(name, name, features, label)
