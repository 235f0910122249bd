"""One safe save and load for every checkpoint of the kit: a single model, a bundle of per-symbol
forecasters (one walk-forward fold of the LDTM), an ensemble of position models, a gradient-boosted
tree model, and a stack of a tree and an LSTM.

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
  order);
* ``kit.tree/1``: ``config`` (:class:`kit.models.trees.TreeConfig` ``.to_dict()``), ``booster`` (the
  booster's own text: LightGBM ``model_to_string``, XGBoost JSON; a string, so the payload stays
  loadable with ``weights_only=True``), ``best_iteration`` and the metadata of ``kit.model/1``;
* ``kit.stack/1``: ``config = {"model": <stack name>, "members": [member configs], "method": ...}``,
  ``members`` (name -> a ``kit.model/1`` or ``kit.tree/1`` payload) and ``weights`` (name -> weight).
* ``kit.foundation/1`` (a foundation model, :mod:`kit.models.foundation`): ``config = {"model":
  "chronos_bolt" | "timesfm", **the transformers config}``, ``architecture`` (the adapter's
  :meth:`~kit.models.foundation.ForecasterAdapter.card`), ``weights = {"checkpoint", "folder",
  "sha256"}`` naming the pretrained weights folder and the sha256 of its weight files, the metadata
  of ``kit.model/1``, and a ``state_dict`` only when the weights are not those of the folder
  (fine-tuned, or a random test model): a zero-shot model is a few kilobytes that point at the
  weights instead of a copy of hundreds of megabytes. Loading it reads the folder (recorded path,
  else the same checkpoint name under :func:`kit.paths.weights_dir`) and refuses weights whose
  sha256 differs.

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
from .foundation import adapter_class, weights_sha256
from .trees import PositionStack, TreeConfig, TreeModel

__all__ = [
    "CheckpointError",
    "ForecasterBundle",
    "save_checkpoint",
    "save_bundle",
    "save_ensemble",
    "save_foundation",
    "ensemble_payload",
    "save_tree",
    "tree_payload",
    "save_stack",
    "stack_payload",
    "read_payload",
    "load_checkpoint",
    "model_from_payload",
]

MODEL_FORMAT = "kit.model/1"
BUNDLE_FORMAT = "kit.bundle/1"
ENSEMBLE_FORMAT = "kit.ensemble/1"
TREE_FORMAT = "kit.tree/1"
STACK_FORMAT = "kit.stack/1"
FOUNDATION_FORMAT = "kit.foundation/1"


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


def tree_payload(model: TreeModel, *, data_sha256: str, train_period, extra: dict | None = None) -> dict:
    """The ``kit.tree/1`` payload of a fitted :class:`kit.models.trees.TreeModel` (booster as text)."""
    return {
        "format": TREE_FORMAT, "config": jsonable(model.config.to_dict()), "booster": model.to_text(),
        "best_iteration": int(model.best_iteration), **_meta(model.feature_names, data_sha256, train_period, extra),
    }


def save_tree(path, model: TreeModel, *, data_sha256: str, train_period, extra: dict | None = None) -> Path:
    """Write a tree model's checkpoint (``kit.tree/1``) atomically: its config, the booster's own
    text (never a pickle), the number of trees used, feature names, data sha256 and training period."""
    return _write(tree_payload(model, data_sha256=data_sha256, train_period=train_period, extra=extra), path)


def stack_payload(name: str, member_paths: dict, weights: dict, method: str) -> dict:
    """The ``kit.stack/1`` payload of saved members (name -> checkpoint path, ``kit.model/1`` or
    ``kit.tree/1``) and their weights (name -> weight).

    Raises
    ------
    CheckpointError
        A member that is neither a single torch model nor a tree model, or weights not naming the
        members.
    """
    members = {str(k): read_payload(v) for k, v in member_paths.items()}
    for k, m in members.items():
        if m.get("format", MODEL_FORMAT) not in (MODEL_FORMAT, TREE_FORMAT) or not ("state_dict" in m or "booster" in m):
            raise CheckpointError(f"stack member {k!r}: must be a single-model or tree checkpoint")
    if set(weights) != set(members):
        raise CheckpointError(f"stack weights name {sorted(weights)}, members are {sorted(members)}")
    config = {"model": str(name), "members": [m["config"] for m in members.values()], "method": str(method)}
    return {"format": STACK_FORMAT, "config": config, "members": members, "weights": jsonable({k: float(weights[k]) for k in members})}


def save_stack(path, name: str, member_paths: dict, weights: dict, method: str) -> Path:
    """Write a stack checkpoint (``kit.stack/1``) of saved members and their weights."""
    return _write(stack_payload(name, member_paths, weights, method), path)
def save_foundation(path, adapter, *, data_sha256: str = "", train_period=(None, None), extra: dict | None = None) -> Path:
    """Write a foundation model's checkpoint (``kit.foundation/1``, see the module docstring)
    atomically: a reference to its weights folder and their sha256 for a zero-shot model loaded
    from a folder; its state dict as well when fine-tuned (or a random model without a folder).

    Parameters
    ----------
    adapter : a :class:`kit.models.foundation.ForecasterAdapter`.
    data_sha256, train_period, extra : as :func:`save_checkpoint` (the training period of a
        zero-shot model is the period its position scale was fitted on).

    Returns
    -------
    The path.
    """
    card = adapter.card()
    payload = {
        "format": FOUNDATION_FORMAT,
        "config": {"model": adapter.name, **adapter.config_dict()},
        "architecture": card,
        "weights": {"checkpoint": adapter.checkpoint, "folder": adapter.source, "sha256": card["weights_sha256"]},
        **_meta(["close"], data_sha256, train_period, extra),
    }
    if adapter.fine_tuned or card["weights_sha256"] is None:
        payload["state_dict"] = adapter.model.state_dict()
    return _write(payload, path)


def _foundation_from_folder(payload: dict) -> nn.Module:
    """The module of a zero-shot ``kit.foundation/1`` payload, read from its weights folder after
    checking their sha256."""
    from ..paths import weights_dir

    w = payload.get("weights") or {}
    cls = adapter_class(payload["config"]["model"])
    folder = Path(str(w.get("folder", "")))
    if not folder.is_dir():
        folder = weights_dir() / str(w.get("checkpoint", ""))
    adapter = cls.from_local_dir(folder)  # MissingWeightsError (with the download command) when absent
    sha = weights_sha256(folder)
    if sha != w.get("sha256"):
        raise CheckpointError(
            f"the weights in {folder} (sha256 {sha[:12]}) are not those the checkpoint was made with ({str(w.get('sha256'))[:12]})"
        )
    return adapter.model.eval()


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
    :class:`PositionEnsemble` (torch), a :class:`kit.models.trees.TreeModel`, a
    :class:`kit.models.trees.PositionStack`, or a foundation model's module (wrap it with
    :func:`kit.models.foundation.adapter_for`).

    Raises
    ------
    CheckpointError
        The weights do not fit the config (missing or unexpected keys, wrong shapes), or a zero-shot
        foundation checkpoint's weights folder holds other weights than recorded.
    kit.models.foundation.MissingWeightsError
        A zero-shot foundation checkpoint whose weights folder is missing.
    """
    if payload.get("format") == FOUNDATION_FORMAT and "state_dict" not in payload:  # zero-shot: the weights folder
        return _foundation_from_folder(payload)
    try:
        fmt = payload.get("format")
        if fmt == TREE_FORMAT:
            cfg = TreeConfig(**payload["config"])
            return TreeModel.from_text(payload["booster"], cfg, payload["best_iteration"], payload.get("feature_names", ()))
        if fmt == STACK_FORMAT:
            members = {k: model_from_payload(m) for k, m in payload["members"].items()}
            return PositionStack(members, {k: float(v) for k, v in payload["weights"].items()}, payload["config"].get("method", ""))
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
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
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
