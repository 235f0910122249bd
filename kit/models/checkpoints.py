"""One safe save and load for every checkpoint of the kit: a single model, a bundle of per-symbol
forecasters (one walk-forward fold of the LDTM), and an ensemble of position models.

Every file is a ``torch.save`` of a dict holding only tensors, strings, numbers, lists and dicts, and
is read with ``torch.load(..., weights_only=True)``: loading a checkpoint never unpickles arbitrary
objects, so a planted file cannot run code (a file that needs more than that is refused with
:class:`CheckpointError`). Writes are atomic (temp file, then rename).

Formats (``payload["format"]``):

* ``kit.model/1``: ``config`` (the model's ``*Config.to_dict()``), ``state_dict``, ``feature_names``,
  ``data_sha256``, ``train_period``, ``torch_version`` and any extra keys (fold, seed, ...);
* ``kit.bundle/1``: the same, with ``symbols`` and one ``state_dicts`` entry per symbol (one
  ``config`` shared by all);
* ``kit.ensemble/1``: ``config = {"model": "ensemble", "members": [member configs], ...}``,
  ``members`` (the members' ``kit.model/1`` payloads) and ``weights`` (name -> weight, in member
  order).

Files written before formats were recorded (no ``format`` key) are recognised by their keys.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..base.atomic import atomic_path
from ..base.jsonable import jsonable
from .catalogue import build_model
from .ensemble import PositionEnsemble

__all__ = [
    "CheckpointError",
    "ForecasterBundle",
    "save_checkpoint",
    "save_bundle",
    "save_ensemble",
    "ensemble_payload",
    "read_payload",
    "load_checkpoint",
    "model_from_payload",
]

MODEL_FORMAT = "kit.model/1"
BUNDLE_FORMAT = "kit.bundle/1"
ENSEMBLE_FORMAT = "kit.ensemble/1"


class CheckpointError(ValueError):
    """A file is not a kit checkpoint, holds more than tensors and plain values (refused unread), or
    does not match its model."""


class ForecasterBundle(nn.Module):
    """The per-symbol forecasters of one walk-forward fold: ``models[i]`` belongs to ``symbols[i]``.

    ``bundle[symbol]`` gives one forecaster (``(B, L, F) -> (B, H)``).

    Raises
    ------
    KeyError
        ``bundle[symbol]`` for a symbol the bundle does not hold.
    """

    def __init__(self, symbols, models):
        super().__init__()
        if len(symbols) != len(models):
            raise ValueError(f"{len(symbols)} symbols but {len(models)} models")
        self.symbols = [str(s) for s in symbols]
        self.models = nn.ModuleList(models)

    def __getitem__(self, symbol: str) -> nn.Module:
        try:
            return self.models[self.symbols.index(str(symbol))]
        except ValueError:
            raise KeyError(f"symbol {symbol!r} is not in this bundle ({len(self.symbols)} symbols)") from None


def _meta(feature_names, data_sha256, train_period, extra) -> dict:
    return {
        "feature_names": [str(n) for n in feature_names],
        "data_sha256": str(data_sha256),
        "train_period": [None if p is None else str(p) for p in train_period],
        "torch_version": str(torch.__version__),
        **jsonable(dict(extra or {})),
    }


def _write(payload: dict, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def save_checkpoint(path, model: nn.Module, *, feature_names, data_sha256: str, train_period, extra: dict | None = None) -> Path:
    """Write one model's checkpoint (``kit.model/1``) atomically, carrying its config, feature names,
    data sha256 and training period, so it can be rebuilt and traced to its data. ``extra`` must be
    JSON-like (it is converted with :func:`kit.base.jsonable`). Returns the path."""
    payload = {"format": MODEL_FORMAT, "config": model.config.to_dict(), "state_dict": model.state_dict(), **_meta(feature_names, data_sha256, train_period, extra)}
    return _write(payload, path)


def save_bundle(path, symbols, models, *, feature_names, data_sha256: str, train_period, extra: dict | None = None) -> Path:
    """Write the per-symbol forecasters of one fold (``kit.bundle/1``; one shared config)."""
    if not models:
        raise ValueError("save_bundle needs at least one model")
    payload = {
        "format": BUNDLE_FORMAT, "config": models[0].config.to_dict(), "symbols": [str(s) for s in symbols],
        "state_dicts": [m.state_dict() for m in models], **_meta(feature_names, data_sha256, train_period, extra),
    }
    return _write(payload, path)


def ensemble_payload(member_paths, weights, method: str | None = None) -> dict:
    """The ``kit.ensemble/1`` payload of members saved by :func:`save_checkpoint` and their weights
    (``{name: weight}`` in member order, or a sequence)."""
    if weights is None:
        raise CheckpointError("an ensemble needs its members' weights (none recorded)")
    members = [read_payload(p) for p in member_paths]
    for p, m in zip(member_paths, members, strict=True):
        if m.get("format", MODEL_FORMAT) != MODEL_FORMAT or "state_dict" not in m:
            raise CheckpointError(f"{p}: an ensemble member must be a single-model checkpoint")
    w = dict(weights) if isinstance(weights, dict) else [float(x) for x in weights]
    config = {"model": "ensemble", "members": [m["config"] for m in members], "ensemble_method": method}
    return {"format": ENSEMBLE_FORMAT, "config": config, "members": members, "weights": jsonable(w)}


def save_ensemble(path, member_paths, weights, method: str | None = None) -> Path:
    """Write an ensemble bundle (``kit.ensemble/1``) of saved members and their weights."""
    return _write(ensemble_payload(member_paths, weights, method), path)


def read_payload(path) -> dict:
    """The checkpoint's dict, read with ``weights_only=True`` (nothing is unpickled).

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        The file is not a torch file, holds objects other than tensors and plain values (the message
        says so; nothing of it ran), or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors and plain values "
            f"(weights_only load failed: {first[:200]}); kit checkpoints never do, so it was not written by the kit"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{path}: not a kit checkpoint (no 'config')")
    return payload


def model_from_payload(payload: dict) -> nn.Module:
    """The model a payload describes, in eval mode: a single model, a :class:`ForecasterBundle` or a
    :class:`PositionEnsemble`.

    Raises
    ------
    CheckpointError
        The weights do not fit the config (missing or unexpected keys, wrong shapes).
    """
    try:
        if "members" in payload:  # kit.ensemble/1
            members = [model_from_payload(p) for p in payload["members"]]
            weights = payload["weights"]
            w = np.array(list(weights.values()) if isinstance(weights, dict) else weights, dtype="float64")
            return PositionEnsemble(members, w).eval()
        if "state_dicts" in payload:  # kit.bundle/1
            models = []
            for sd in payload["state_dicts"]:
                m = build_model(payload["config"])
                m.load_state_dict(sd)
                models.append(m.eval())
            return ForecasterBundle(payload["symbols"], models).eval()
        model = build_model(payload["config"])
        model.load_state_dict(payload["state_dict"])
        return model.eval()
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint does not fit its model config: {type(exc).__name__}: {str(exc)[:300]}") from None


def load_checkpoint(path) -> tuple[nn.Module, dict]:
    """Rebuild the model of any kit checkpoint; returns ``(model, payload)`` (model in eval mode).

    Raises
    ------
    FileNotFoundError, CheckpointError
        As :func:`read_payload` and :func:`model_from_payload`.
    """
    payload = read_payload(path)
    return model_from_payload(payload), payload
