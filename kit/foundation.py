"""Time-series foundation models as forecasters: Chronos-Bolt and TimesFM 2.5, loaded from local
weights only, on the kit's walk-forward, position rule and benchmarks.

Contract (the one :class:`kit.models.LDTMForecaster` meets through :func:`kit.training.walk_forward_ldtm`):
at each decision date t and symbol, one forecast per horizon ``h`` in ``(1, 5, 21)`` of the simple
return ``close_{t+h} / close_t - 1``, made from closes up to t only; here three of them, the 10 %,
50 % and 90 % quantiles. Positions are ``tanh(s * q50_1d / daily ex-ante vol)``
(:func:`kit.training.ldtm_positions`) with ``s`` fitted on validation forecasts only.

Inputs are PRICES. An adapter's :meth:`ForecasterAdapter.forecast` takes ``(N, L)`` adjusted closes
(positive) ending at the decision date and returns ``(N, H, 3)`` quantiles of the simple return over
each horizon from the last close. Internally the context is divided by its last close (a relative
price path ending at 1.0); both models normalise each series by its own location and scale, so the
forecast does not depend on the price level (checked by the tests). A model forecasts the marginal
quantile of the *level* at each step t+h; ``q / 1.0 - 1`` is then exactly the same quantile of the
h-day simple return (a monotone map), which would not hold for a model fed daily returns (the
quantile of a sum is not the sum of quantiles).

Offline by design: weights are read from a local folder (:func:`resolve_weights`: an explicit
``model_dir`` such as a profile's, else ``$KIT_MODEL_DIR``, else ``data/state/models`` in the
repository), with ``local_files_only=True``; nothing is downloaded at run time. A missing folder
raises :class:`MissingWeightsError` naming the model, the folder and the one ``hf download`` command
that fetches it. The libraries are the optional extra ``pip install -e '.[foundation]'``;
``import kit.foundation`` works without them and the adapters then raise an ImportError saying so.

Sources
-------
Chronos-Bolt: Ansari et al. (2024), "Chronos: Learning the Language of Time Series", TMLR, and the
Chronos-Bolt models of the ``chronos-forecasting`` package (patched T5 encoder-decoder, direct
multi-step quantile head). TimesFM 2.5: Das, Kong, Sen & Zhou (2024), "A decoder-only foundation
model for time-series forecasting", ICML, in ``transformers``' ``TimesFm2_5ModelForPrediction``.
Quantile rearrangement: Chernozhukov, Fernandez-Val & Galichon (2010), "Quantile and probability
curves without crossing", Econometrica 78(3). Pinball loss: Koenker & Bassett (1978).

Imports from the kit (to re-point when the package is reshaped): ``kit.training`` (splits, leakage
count, position rule, Trainer, WalkForwardResult), ``kit.features`` (daily returns, ex-ante vol).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .features import daily_returns, ex_ante_vol
from .training import (
    LeakageError,
    TrainConfig,
    Trainer,
    WalkForwardResult,
    count_leakage,
    ldtm_positions,
    walk_forward_splits,
)

__all__ = [
    "QUANTILES",
    "HORIZONS",
    "MODEL_DIR_ENV",
    "CHECKPOINTS",
    "MissingWeightsError",
    "FoundationDependencyError",
    "default_model_dir",
    "resolve_weights",
    "download_command",
    "ForecasterAdapter",
    "ChronosBoltAdapter",
    "TimesFMAdapter",
    "load_adapter",
    "rearrange_quantiles",
    "pinball_loss",
    "price_windows",
    "forecast_dates",
    "position_scale",
    "FineTuneConfig",
    "FineTuneResult",
    "fine_tune",
    "FoundationWalkForwardResult",
    "walk_forward_foundation",
]

QUANTILES = (0.1, 0.5, 0.9)
"""Quantile levels every adapter returns, in this order."""

HORIZONS = (1, 5, 21)
"""Default forecast horizons in trading days."""

MODEL_DIR_ENV = "KIT_MODEL_DIR"

CHECKPOINTS = {
    "chronos-bolt-tiny": ("chronos_bolt", "amazon/chronos-bolt-tiny"),
    "chronos-bolt-mini": ("chronos_bolt", "amazon/chronos-bolt-mini"),
    "chronos-bolt-small": ("chronos_bolt", "amazon/chronos-bolt-small"),
    "chronos-bolt-base": ("chronos_bolt", "amazon/chronos-bolt-base"),
    "timesfm-2.5-200m-transformers": ("timesfm", "google/timesfm-2.5-200m-transformers"),
}
"""Known checkpoints: local folder name -> (adapter kind, Hugging Face repository id). The folder
name is the repository's name, so ``hf download REPO --local-dir $KIT_MODEL_DIR/NAME`` puts it
where :func:`resolve_weights` looks."""

_REPO_ROOT = Path(__file__).resolve().parent.parent
_EXTRA_HINT = "install the optional extra: pip install -e '.[foundation]'"


class MissingWeightsError(FileNotFoundError):
    """A model's weight folder is missing or incomplete; the message says where to put it and the
    command that downloads it."""


class FoundationDependencyError(ImportError):
    """The optional ``[foundation]`` libraries are not installed."""


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise FoundationDependencyError(f"kit.foundation needs {module!r}: {_EXTRA_HINT}") from exc


# ------------------------------------------------------------------------------------------------
# local weights
# ------------------------------------------------------------------------------------------------


def default_model_dir(model_dir=None) -> Path:
    """The folder that holds one sub-folder per checkpoint.

    ``model_dir`` when given (e.g. a profile's ``model_dir``), else ``$KIT_MODEL_DIR``, else
    ``data/state/models`` in the repository (the registry's default for non-SQLite databases; the
    registry's versioned ``.pt`` files and these folders do not collide).
    """
    if model_dir is not None and str(model_dir).strip():
        return Path(model_dir).expanduser()
    env = os.environ.get(MODEL_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return _REPO_ROOT / "data" / "state" / "models"


def download_command(name: str, folder) -> str:
    """The one shell command that downloads checkpoint ``name`` (a key of :data:`CHECKPOINTS`) into
    ``folder`` (``hf`` is the command-line tool of ``huggingface_hub`` >= 1.0, which replaced
    ``huggingface-cli``)."""
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint name {name!r}; known: {sorted(CHECKPOINTS)}")
    return f"hf download {CHECKPOINTS[name][1]} --local-dir {folder}"


def _weight_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")])


def _check_folder(folder: Path, model: str, name: str | None) -> Path:
    """Raise :class:`MissingWeightsError` unless ``folder`` holds ``config.json`` and weights."""
    if folder.is_dir() and (folder / "config.json").is_file() and _weight_files(folder):
        return folder
    if not folder.exists():
        what = "does not exist"
    elif not folder.is_dir():
        what = "is not a folder"
    elif not (folder / "config.json").is_file():
        what = "has no config.json"
    else:
        what = "has no weights (*.safetensors or pytorch_model*.bin)"
    how = (
        f"With internet access, download it once:\n    {download_command(name, folder)}"
        if name in CHECKPOINTS
        else f"Put the checkpoint's config.json and weights there (known checkpoints: {sorted(CHECKPOINTS)})"
    )
    raise MissingWeightsError(
        f"{model} weights not found: {folder} {what}. The kit never downloads weights at run time. {how}\n"
        f"(the weights folder is ${MODEL_DIR_ENV}/<name>, or model_dir/<name> when a profile gives model_dir)"
    )


def resolve_weights(name: str, model_dir=None) -> Path:
    """The local folder of checkpoint ``name``: ``default_model_dir(model_dir) / name``.

    Parameters
    ----------
    name : a key of :data:`CHECKPOINTS` (e.g. ``"chronos-bolt-small"``) or any folder name.
    model_dir : parent folder (default :func:`default_model_dir`).

    Returns
    -------
    Path of a folder holding ``config.json`` and ``*.safetensors`` (or ``pytorch_model*.bin``).

    Raises
    ------
    MissingWeightsError
        The folder or its files are missing; the message names the model, the folder and the
        download command.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"name must be a folder name such as 'chronos-bolt-small', got {name!r}")
    return _check_folder(default_model_dir(model_dir) / name, name, name)


def _sha256_files(files) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# quantile helpers
# ------------------------------------------------------------------------------------------------


def rearrange_quantiles(q: np.ndarray) -> tuple[np.ndarray, int]:
    """Sort quantile forecasts along the last axis so that they never cross.

    The rearrangement of Chernozhukov, Fernandez-Val & Galichon (2010): for a crossing curve the
    sorted values are a quantile curve at least as close to the true one in every Lp norm; an
    ordered curve is unchanged.

    Parameters
    ----------
    q : ``(..., Q)`` float array, levels increasing along the last axis.

    Returns
    -------
    (sorted copy, number of curves ``(...)`` that crossed).
    """
    q = np.asarray(q, dtype="float64")
    crossed = int((np.diff(q, axis=-1) < 0).any(axis=-1).sum()) if q.shape[-1] > 1 else 0
    return np.sort(q, axis=-1), crossed


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels) -> torch.Tensor:
    """Mean pinball (quantile) loss of Koenker & Bassett (1978).

    ``rho_tau(u) = max(tau u, (tau - 1) u)`` with ``u = target - pred``, averaged over the valid
    (sample, step) pairs and the quantile levels.

    Parameters
    ----------
    pred : ``(B, P, Q)`` quantile forecasts; target : ``(B, P)``; mask : ``(B, P)`` bool;
    levels : ``(Q,)`` quantile levels in (0, 1).

    Returns
    -------
    0-d tensor (0 when nothing is valid).
    """
    tau = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device)
    u = target.unsqueeze(-1) - pred
    loss = torch.maximum(tau * u, (tau - 1) * u).mean(dim=-1)
    m = mask.to(pred.dtype)
    return (loss * m).sum() / m.sum().clamp_min(1.0)


def _level_index(levels, wanted=QUANTILES) -> list[int]:
    out = []
    for q in wanted:
        hit = [i for i, v in enumerate(levels) if math.isclose(float(v), q, abs_tol=1e-9)]
        if not hit:
            raise ValueError(f"the model's quantile levels {list(levels)} do not include {q}; the kit needs {list(wanted)}")
        out.append(hit[0])
    return out


def _check_horizons(horizons, max_horizon: int) -> tuple[int, ...]:
    try:
        hs = tuple(int(h) for h in horizons)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"horizons must be positive integers, got {horizons!r}") from exc
    if not hs or any(h < 1 for h in hs) or len(set(hs)) != len(hs) or any(h != float(x) for h, x in zip(hs, horizons, strict=True)):
        raise ValueError(f"horizons must be distinct positive integers, got {horizons!r}")
    if max(hs) > max_horizon:
        raise ValueError(f"horizon {max(hs)} exceeds the model's prediction length {max_horizon}")
    return hs


# ------------------------------------------------------------------------------------------------
# adapters
# ------------------------------------------------------------------------------------------------


class ForecasterAdapter:
    """A pretrained time-series model behind the kit's forecaster contract.

    Subclasses implement :meth:`quantile_path` (relative price path -> quantiles of the next P
    levels, differentiable, for forecasting and fine-tuning) and the loading hooks.

    Parameters
    ----------
    model : the torch module (a ``transformers`` ``PreTrainedModel``).
    source : where the weights came from (a local folder, or ``"random:<seed>"`` for a tiny model).
    batch_size : series per forward pass in :meth:`forecast`.

    Attributes
    ----------
    quantiles : ``(0.1, 0.5, 0.9)``, the levels :meth:`forecast` returns.
    last_crossings : number of (series, horizon) forecasts whose raw quantiles crossed in the last
        :meth:`forecast` call (they were rearranged); ``last_crossings_per_series`` the same per
        series, ``(N,)`` int.
    fine_tuned : whether :func:`fine_tune` changed the weights.
    """

    kind = "base"
    model_name = "foundation model"
    default_checkpoint = ""
    quantiles = QUANTILES

    def __init__(self, model: nn.Module, *, source: str = "", batch_size: int = 256):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model = model.eval()
        self.source = str(source)
        self.batch_size = int(batch_size)
        self.last_crossings = 0
        self.last_crossings_per_series = np.zeros(0, np.int64)
        self.fine_tuned = False
        self._idx = _level_index(self.model_quantiles)

    # -- model-specific ------------------------------------------------------------------------
    @property
    def model_quantiles(self) -> tuple[float, ...]:
        """Quantile levels of the model's own head (e.g. 0.1, ..., 0.9)."""
        raise NotImplementedError

    @property
    def max_horizon(self) -> int:
        """Steps the model forecasts in one pass (longer horizons are refused)."""
        raise NotImplementedError

    @property
    def min_context(self) -> int:
        """Shortest context (dates) accepted."""
        return 2

    @property
    def max_context(self) -> int:
        """Longest context the model reads; older dates are ignored."""
        raise NotImplementedError

    def quantile_path(self, rel: torch.Tensor) -> torch.Tensor:
        """Quantiles of the next :attr:`max_horizon` relative price levels.

        Parameters
        ----------
        rel : ``(B, L)`` float32 tensor, prices divided by the last one (``rel[:, -1] == 1``).

        Returns
        -------
        ``(B, max_horizon, len(model_quantiles))`` tensor (differentiable; no rearrangement).
        """
        raise NotImplementedError

    @classmethod
    def _load(cls, folder: Path) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def tiny_config(cls, **overrides):
        """A few-thousand-parameter config of the model's architecture, for tests and benchmarks."""
        raise NotImplementedError

    @classmethod
    def _build(cls, config) -> nn.Module:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    @classmethod
    def from_local_dir(cls, path, *, batch_size: int = 256, device: str = "cpu"):
        """Load weights from a local folder (``config.json`` + ``*.safetensors``), never a hub.

        Raises
        ------
        MissingWeightsError
            The folder or its files are missing; the message gives the download command.
        ValueError
            The folder holds another model's config.
        """
        folder = Path(path).expanduser()
        name = folder.name if folder.name in CHECKPOINTS else cls.default_checkpoint
        _check_folder(folder, cls.model_name, name)
        model = cls._load(folder).to(device)
        return cls(model, source=str(folder.resolve()), batch_size=batch_size)

    @classmethod
    def from_model_dir(cls, name: str | None = None, model_dir=None, **kwargs):
        """Load checkpoint ``name`` (default :attr:`default_checkpoint`) from
        :func:`default_model_dir` (``model_dir``, ``$KIT_MODEL_DIR`` or the repository default)."""
        name = name or cls.default_checkpoint
        folder = default_model_dir(model_dir) / name
        _check_folder(folder, f"{cls.model_name} ({name})", name)
        return cls.from_local_dir(folder, **kwargs)

    @classmethod
    def tiny(cls, seed: int = 0, *, batch_size: int = 256, **overrides):
        """A tiny randomly initialised model (no download) from :meth:`tiny_config`; the global
        random state is left as it was."""
        cfg = cls.tiny_config(**overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = cls._build(cfg)
        return cls(model, source=f"random:{int(seed)}", batch_size=batch_size)

    def save(self, path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``path`` (a folder);
        :meth:`from_local_dir` reads them back."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        return path

    def card(self, *, hash_weights: bool = True) -> dict:
        """JSON-able description for the registry and reports: kind, model name, source, parameter
        count, quantiles, max context/horizon, fine-tuned flag, the model config and (when the
        source is a folder) the sha256 of its weight files."""
        d = {
            "model": f"foundation_{self.kind}",
            "model_name": self.model_name,
            "source": self.source,
            "n_parameters": self.n_parameters,
            "quantiles": list(self.quantiles),
            "model_quantiles": list(self.model_quantiles),
            "max_horizon": self.max_horizon,
            "max_context": self.max_context,
            "fine_tuned": self.fine_tuned,
            "config": json.loads(self.model.config.to_json_string()),
        }
        folder = Path(self.source)
        if hash_weights and self.source and not self.source.startswith("random:") and folder.is_dir():
            d["weights_sha256"] = _sha256_files(_weight_files(folder))
        return d

    def _check_context(self, context) -> np.ndarray:
        c = np.asarray(context, dtype="float64")
        if c.ndim != 2:
            raise ValueError(f"context must be a 2-D (N, L) array of prices, got shape {c.shape}")
        n, L = c.shape
        if n == 0:
            raise ValueError("context has no series (N = 0)")
        if L < self.min_context:
            raise ValueError(f"context length L={L} is shorter than {self.model_name}'s minimum {self.min_context}")
        bad = ~(np.isfinite(c) & (c > 0))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"context must hold positive finite prices; got {c[i, j]} at series {i}, step {j} ({int(bad.sum())} bad value(s))")
        return c

    def forecast(self, context, horizons=HORIZONS) -> np.ndarray:
        """Quantile forecasts of the simple return over each horizon from the last close.

        Parameters
        ----------
        context : ``(N, L)`` float array of PRICES (adjusted closes, positive, finite), one row per
            series, the last column the close at the decision date. Only the last
            :attr:`max_context` columns are read.
        horizons : distinct positive ints, each <= :attr:`max_horizon` (default 1, 5, 21).

        Returns
        -------
        ``(N, H, 3)`` float64: quantiles 0.1, 0.5, 0.9 (increasing along the last axis; crossings of
        the raw model output are rearranged and counted in :attr:`last_crossings`) of
        ``close_{t+h} / close_t - 1``. Deterministic; each series is forecast independently of the
        others in the batch. Values are not clipped: a level quantile <= 0 (possible with random
        weights) gives a return <= -1, which :func:`kit.ledger.snapshot` refuses.

        Raises
        ------
        ValueError
            Context not 2-D, too short, or holding a non-positive or non-finite price; bad horizons.
        """
        c = self._check_context(context)
        hs = _check_horizons(horizons, self.max_horizon)
        rel = c / c[:, -1:]
        L = min(c.shape[1], self.max_context)
        rel = np.ascontiguousarray(rel[:, -L:], dtype=np.float32)
        steps = np.asarray(hs) - 1
        out = np.empty((len(c), len(hs), len(self.quantiles)))
        self.model.eval()
        dev = self.device
        with torch.no_grad():
            for i in range(0, len(rel), self.batch_size):
                x = torch.from_numpy(rel[i : i + self.batch_size]).to(dev)
                q = self.quantile_path(x)[:, :, self._idx].float().cpu().numpy().astype("float64")
                out[i : i + len(x)] = q[:, steps, :] - 1.0
        self.last_crossings_per_series = (np.diff(out, axis=-1) < 0).any(axis=-1).sum(axis=-1)
        out, self.last_crossings = rearrange_quantiles(out)
        return out


class ChronosBoltAdapter(ForecasterAdapter):
    """Chronos-Bolt (``chronos-forecasting``'s ``ChronosBoltModelForForecasting``).

    A T5 encoder over patches of the mean-scaled context and a decoder emitting all quantiles of
    the next ``prediction_length`` (64 for the published checkpoints) values in one pass, so
    horizons 1, 5 and 21 need no autoregression. Published: ``amazon/chronos-bolt-{tiny, mini,
    small, base}`` (9M, 21M, 48M, 205M parameters; context 2048).
    """

    kind = "chronos_bolt"
    model_name = "Chronos-Bolt"
    default_checkpoint = "chronos-bolt-small"

    @property
    def model_quantiles(self):
        return tuple(float(q) for q in self.model.chronos_config.quantiles)

    @property
    def max_horizon(self) -> int:
        return int(self.model.chronos_config.prediction_length)

    @property
    def max_context(self) -> int:
        return int(self.model.chronos_config.context_length)

    def quantile_path(self, rel: torch.Tensor) -> torch.Tensor:
        return self.model(context=rel).quantile_preds.transpose(1, 2)  # (B, Q, P) -> (B, P, Q)

    @classmethod
    def _load(cls, folder: Path) -> nn.Module:
        transformers = _require("transformers")
        bolt = _require("chronos.chronos_bolt")
        cfg = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        cc = getattr(cfg, "chronos_config", None)
        arch = (getattr(cfg, "architectures", None) or [""])[0]
        if not isinstance(cc, dict) or "input_patch_size" not in cc or arch != "ChronosBoltModelForForecasting":
            raise ValueError(
                f"{folder} does not hold a Chronos-Bolt checkpoint (architecture {arch!r}, "
                f"pipeline {getattr(cfg, 'chronos_pipeline_class', None)!r})"
            )
        return bolt.ChronosBoltModelForForecasting.from_pretrained(folder, local_files_only=True, dtype=torch.float32)

    @classmethod
    def tiny_config(cls, **overrides):
        """T5 config with the published checkpoints' keys at toy sizes: d_model 16, 1 encoder and
        1 decoder layer, patches of 8, context 64, prediction length 24 (>= 21), quantiles 0.1..0.9.
        ``overrides`` replace top-level keys, or ``chronos_config`` keys when named ``context_length``,
        ``prediction_length``, ``input_patch_size``, ``input_patch_stride``, ``quantiles``."""
        transformers = _require("transformers")
        cc = {
            "context_length": 64,
            "prediction_length": 24,
            "input_patch_size": 8,
            "input_patch_stride": 8,
            "quantiles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            "use_reg_token": True,
        }
        for k in list(overrides):
            if k in cc:
                cc[k] = overrides.pop(k)
        kw = {
            "architectures": ["ChronosBoltModelForForecasting"],
            "chronos_pipeline_class": "ChronosBoltPipeline",
            "chronos_config": cc,
            "d_model": 16,
            "d_ff": 32,
            "d_kv": 4,
            "num_heads": 4,
            "num_layers": 1,
            "num_decoder_layers": 1,
            "dropout_rate": 0.0,
            "dense_act_fn": "relu",
            "feed_forward_proj": "relu",
            "is_gated_act": False,
            "decoder_start_token_id": 0,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "reg_token_id": 1,
            "vocab_size": 2,
            "initializer_factor": 0.05,
            "is_encoder_decoder": True,
            "use_cache": False,
        }
        kw.update(overrides)
        return transformers.T5Config(**kw)

    @classmethod
    def _build(cls, config) -> nn.Module:
        bolt = _require("chronos.chronos_bolt")
        return bolt.ChronosBoltModelForForecasting(config)


class TimesFMAdapter(ForecasterAdapter):
    """TimesFM 2.5 through ``transformers``' ``TimesFm2_5ModelForPrediction``.

    A decoder-only transformer over patches of 32 (with reversible instance normalisation) and a
    head giving the mean and the 0.1..0.9 quantiles of the next ``horizon_length`` (128) values;
    flip-invariance averaging is on, as in the published configuration. Published:
    ``google/timesfm-2.5-200m-transformers`` (200M parameters, context up to 16k).

    The model splits its context into patches of ``patch_length``; a context that is not a multiple
    of it would be front-padded with zeros that also enter the model's global mean and standard
    deviation, so the adapter reads the last ``floor(L / patch_length) * patch_length`` dates instead.
    """

    kind = "timesfm"
    model_name = "TimesFM 2.5"
    default_checkpoint = "timesfm-2.5-200m-transformers"

    @property
    def model_quantiles(self):
        return tuple(float(q) for q in self.model.config.quantiles)

    @property
    def max_horizon(self) -> int:
        return int(self.model.config.horizon_length)

    @property
    def min_context(self) -> int:
        return int(self.model.config.patch_length)

    @property
    def max_context(self) -> int:
        return int(self.model.config.context_length)

    def quantile_path(self, rel: torch.Tensor) -> torch.Tensor:
        p = int(self.model.config.patch_length)
        L = (min(rel.shape[1], self.max_context) // p) * p
        if L < p:
            raise ValueError(f"context length {rel.shape[1]} is shorter than TimesFM's patch length {p}")
        out = self.model(past_values=rel[:, -L:], forecast_context_len=L)
        return out.full_predictions[:, :, 1:]  # channel 0 is the mean, 1.. the quantile levels

    @classmethod
    def _load(cls, folder: Path) -> nn.Module:
        transformers = _require("transformers")
        cfg = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        if getattr(cfg, "model_type", None) != "timesfm2_5":
            raise ValueError(f"{folder} does not hold a TimesFM 2.5 checkpoint (model_type {getattr(cfg, 'model_type', None)!r})")
        return transformers.TimesFm2_5ModelForPrediction.from_pretrained(folder, local_files_only=True, dtype=torch.float32)

    @classmethod
    def tiny_config(cls, **overrides):
        """TimesFM 2.5 config at toy sizes: patches of 8, context 64, horizon 24 (>= 21), hidden 16,
        one layer, 4 heads, quantile head of 32 steps; ``overrides`` replace any key."""
        transformers = _require("transformers")
        kw = {
            "patch_length": 8,
            "context_length": 64,
            "horizon_length": 24,
            "num_hidden_layers": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "head_dim": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "output_quantile_len": 32,
            "max_position_embeddings": 64,
        }
        kw.update(overrides)
        return transformers.TimesFm2_5Config(**kw)

    @classmethod
    def _build(cls, config) -> nn.Module:
        transformers = _require("transformers")
        return transformers.TimesFm2_5ModelForPrediction(config)


ADAPTERS = {"chronos_bolt": ChronosBoltAdapter, "timesfm": TimesFMAdapter}


def load_adapter(name: str, model_dir=None, **kwargs) -> ForecasterAdapter:
    """The adapter for checkpoint ``name`` (a key of :data:`CHECKPOINTS`) from the local model
    folder (:func:`default_model_dir`). Raises :class:`MissingWeightsError` (with the download
    command) when absent, ValueError for an unknown name."""
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint name {name!r}; known: {sorted(CHECKPOINTS)}")
    return ADAPTERS[CHECKPOINTS[name][0]].from_model_dir(name, model_dir, **kwargs)


# ------------------------------------------------------------------------------------------------
# windows and batched forecasts over a (T, N) price frame
# ------------------------------------------------------------------------------------------------


def _complete(close: np.ndarray, L: int) -> np.ndarray:
    """(T, N) bool: the L closes ending at t are all finite and positive (False for t < L - 1)."""
    ok = np.isfinite(close) & (close > 0)
    cum = np.concatenate([np.zeros((1, close.shape[1]), np.int64), np.cumsum(~ok, axis=0)])
    out = np.zeros(close.shape, bool)
    if len(close) >= L:
        out[L - 1 :] = (cum[L:] - cum[: len(close) - L + 1]) == 0
    return out


def price_windows(close: np.ndarray, start: int, end: int, context_length: int, steps: int, stride: int = 1, max_windows: int | None = None):
    """Training windows for fine-tuning: (context, future) price pairs for decision dates in
    ``[start, end)``.

    Parameters
    ----------
    close : ``(T, N)`` float array of adjusted closes (NaN where unknown).
    start, end : positions on the date axis (decision dates).
    context_length : L, closes up to and including the decision date t.
    steps : P, closes t+1 .. t+P after it.
    stride : keep every ``stride``-th decision date counted back from ``end - 1``.
    max_windows : keep at most this many windows, the most recent ones.

    Returns
    -------
    ``(context (S, L), future (S, P), where (S, 2))`` float64, float64, int64 (date index, symbol
    index); only windows whose L + P closes are all finite and positive.

    Raises
    ------
    ValueError
        Bad ``context_length``, ``steps``, ``stride`` or ``max_windows``.
    """
    for nm, v in (("context_length", context_length), ("steps", steps), ("stride", stride)):
        if int(v) != v or v < 1:
            raise ValueError(f"{nm} must be an integer >= 1, got {v!r}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows!r}")
    close = np.asarray(close, dtype="float64")
    T = len(close)
    L, P = int(context_length), int(steps)
    full = _complete(close, L + P)  # complete window ending at t + P
    dates = np.arange(min(end, T - P) - 1, max(start, L - 1) - 1, -int(stride))[::-1]
    if len(dates) == 0:
        return np.zeros((0, L)), np.zeros((0, P)), np.zeros((0, 2), np.int64)
    di, si = np.nonzero(full[dates + P])
    if max_windows is not None and len(di) > max_windows:
        keep = np.argsort(-dates[di], kind="stable")[:max_windows]
        keep.sort()
        di, si = di[keep], si[keep]
    t = dates[di]
    win = np.lib.stride_tricks.sliding_window_view(close, L + P, axis=0)  # (T-L-P+1, N, L+P)
    w = win[t - L + 1, si]
    return np.ascontiguousarray(w[:, :L]), np.ascontiguousarray(w[:, L:]), np.stack([t, si], axis=1).astype(np.int64)


def forecast_dates(
    adapter: ForecasterAdapter,
    close: np.ndarray,
    dates,
    context_length: int,
    horizons=HORIZONS,
    progress: bool = False,
    return_crossings: bool = False,
) -> np.ndarray:
    """Forecasts of every symbol at the given decision dates, batched over (date, symbol).

    Parameters
    ----------
    close : ``(T, N)`` adjusted closes (NaN where unknown).
    dates : ``(D,)`` positions on the date axis.
    context_length : L closes ending at each date (no later close is read).

    Returns
    -------
    ``(D, N, H, 3)`` float64 return quantiles; NaN where the L closes are not all finite and
    positive (never a forecast from filled-in prices). ``adapter.last_crossings`` is set to the
    number of rearranged (date, symbol, horizon) forecasts; with ``return_crossings`` the result is
    ``(forecasts, crossings)`` with ``crossings`` ``(D,)`` int, that number per date.
    """
    close = np.asarray(close, dtype="float64")
    dates = np.asarray(dates, dtype=np.int64)
    L = int(context_length)
    if L < adapter.min_context:
        raise ValueError(f"context_length={L} is shorter than {adapter.model_name}'s minimum {adapter.min_context}")
    hs = _check_horizons(horizons, adapter.max_horizon)
    out = np.full((len(dates), close.shape[1], len(hs), len(adapter.quantiles)), np.nan)
    per_date = np.zeros(len(dates), np.int64)
    ok = _complete(close, L)[dates]
    di, si = np.nonzero(ok)
    if len(di) == 0:
        adapter.last_crossings = 0
        return (out, per_date) if return_crossings else out
    win = np.lib.stride_tricks.sliding_window_view(close, L, axis=0)  # (T-L+1, N, L)
    chunk = max(adapter.batch_size, 1) * 8
    rng = range(0, len(di), chunk)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc=f"{adapter.model_name} forecasts", leave=False)
    crossings = 0
    for a in rng:
        d, s = di[a : a + chunk], si[a : a + chunk]
        out[d, s] = adapter.forecast(win[dates[d] - L + 1, s], hs)
        crossings += adapter.last_crossings
        np.add.at(per_date, d, adapter.last_crossings_per_series)
    adapter.last_crossings = crossings
    return (out, per_date) if return_crossings else out


def position_scale(forecast_1d: np.ndarray, daily_vol: np.ndarray) -> float:
    """Scale ``s`` of :func:`kit.training.ldtm_positions` from validation forecasts: ``1 / std(z)``
    with ``z = forecast / daily_vol`` pooled over dates and symbols (the rule of
    :func:`kit.training.walk_forward_ldtm`); 1.0 when fewer than 2 finite z or a zero spread."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.asarray(forecast_1d, dtype="float64") / np.asarray(daily_vol, dtype="float64")
    z = z[np.isfinite(z)]
    sd = float(np.std(z)) if len(z) > 1 else 0.0
    return 1.0 / sd if sd > 0 else 1.0


# ------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------


@dataclass
class FineTuneConfig:
    """Settings of :func:`fine_tune` and of the windows :func:`walk_forward_foundation` cuts.

    The optimiser, cosine schedule, gradient clipping, early stopping and best-weight restore are
    :class:`kit.training.Trainer`'s; ``lr`` defaults to 1e-5 (pretrained weights move little).
    ``window_stride``: decision dates between training windows (consecutive windows share L - 1
    closes); ``max_train_windows`` / ``max_val_windows``: the most recent windows kept per fold.
    """

    epochs: int = 5
    patience: int = 2
    lr: float = 1e-5
    weight_decay: float = 0.0
    batch_size: int = 32
    max_grad_norm: float = 1.0
    window_stride: int = 5
    max_train_windows: int = 4096
    max_val_windows: int = 1024
    seed: int = 0
    device: str = "cpu"

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm, patience=self.patience, seed=self.seed, cosine=True,
            device=self.device, amp=False,
        )


@dataclass
class FineTuneResult:
    """Outcome of :func:`fine_tune`: validation pinball loss before (zero-shot) and after, the best
    epoch, epochs run and the per-epoch history (``epoch, train_loss, val_loss``)."""

    val_loss_zero_shot: float
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list = field(default_factory=list)


class _ReturnQuantiles(nn.Module):
    """``(B, L)`` relative prices -> ``(B, P, Q)`` quantiles of the simple returns over steps 1..P."""

    def __init__(self, adapter: ForecasterAdapter, steps: int):
        super().__init__()
        self.net = adapter.model
        self._adapter = [adapter]  # not a submodule
        self.steps = steps

    def forward(self, x):
        return self._adapter[0].quantile_path(x)[:, : self.steps] - 1.0


def _relative(windows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ctx, fut = (np.asarray(a, dtype="float64") for a in windows)
    if ctx.ndim != 2 or fut.ndim != 2 or len(ctx) != len(fut):
        raise ValueError(f"windows must be (context (S, L), future (S, P)) arrays, got shapes {ctx.shape} and {fut.shape}")
    bad = ~(np.isfinite(ctx) & (ctx > 0))
    if bad.any():
        raise ValueError(f"context windows must hold positive finite prices ({int(bad.sum())} bad value(s))")
    last = ctx[:, -1:]
    y = fut / last - 1.0
    mask = np.isfinite(y)
    return (ctx / last).astype(np.float32), np.nan_to_num(y, nan=0.0).astype(np.float32), mask


def fine_tune(adapter: ForecasterAdapter, train, val, *, epochs: int | None = None, patience: int | None = None, config: FineTuneConfig | None = None) -> FineTuneResult:
    """Fine-tune an adapter's model in place on price windows, early-stopped on validation windows.

    The loss is the pinball loss (:func:`pinball_loss`) over all the model's quantile levels and
    every step 1..P of the simple return path ``close_{t+k} / close_t - 1``; training is
    :class:`kit.training.Trainer` (AdamW, cosine schedule, clipping, early stopping after
    ``patience`` epochs without a better validation loss, best weights restored).

    Parameters
    ----------
    adapter : a :class:`ForecasterAdapter` (its model is changed; copy it first to keep the base).
    train, val : ``(context (S, L), future (S, P))`` price windows, e.g. from :func:`price_windows`
        on the training and validation blocks of a walk-forward fold; P <= ``adapter.max_horizon``.
    epochs, patience : override ``config``'s.
    config : :class:`FineTuneConfig` (default settings when None).

    Returns
    -------
    :class:`FineTuneResult`. When no epoch beats the starting weights' validation loss, the starting
    weights are kept (``best_epoch = -1``, ``best_val_loss = val_loss_zero_shot``, ``fine_tuned``
    stays False): early stopping that may also stop at epoch 0.

    Raises
    ------
    ValueError
        Empty or malformed windows, or P above the model's prediction length.
    """
    cfg = copy.copy(config or FineTuneConfig())
    if epochs is not None:
        cfg.epochs = int(epochs)
    if patience is not None:
        cfg.patience = int(patience)
    if cfg.epochs < 1 or cfg.patience < 1:
        raise ValueError(f"epochs and patience must be >= 1, got {cfg.epochs} and {cfg.patience}")
    Xt, yt, mt = _relative(train)
    Xv, yv, mv = _relative(val)
    if len(Xt) == 0 or len(Xv) == 0:
        raise ValueError(f"fine_tune needs training and validation windows, got {len(Xt)} and {len(Xv)}")
    P = yt.shape[1]
    if yv.shape[1] != P or Xv.shape[1] != Xt.shape[1]:
        raise ValueError(f"train and val windows disagree: {Xt.shape}/{yt.shape} vs {Xv.shape}/{yv.shape}")
    if P > adapter.max_horizon:
        raise ValueError(f"future windows of {P} steps exceed the model's prediction length {adapter.max_horizon}")
    levels = adapter.model_quantiles

    def loss_fn(out, y, mask):
        return pinball_loss(out, y, mask, levels)

    trainer = Trainer(cfg.train_config(), loss_fn=loss_fn)
    wrapper = _ReturnQuantiles(adapter, P).to(trainer.device)
    before = trainer.evaluate(wrapper, *(torch.as_tensor(a).to(trainer.device) for a in (Xv, yv, mv)), batch=256)
    start_state = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    res = trainer.fit(wrapper, (Xt, yt, mt), (Xv, yv, mv))
    if not res.best_val_loss < before:  # no epoch beat the starting weights on validation: keep them
        adapter.model.load_state_dict(start_state)
        adapter.model.eval()
        return FineTuneResult(before, before, -1, res.epochs_run, res.history)
    adapter.model.eval()
    adapter.fine_tuned = True
    return FineTuneResult(before, res.best_val_loss, res.best_epoch, res.epochs_run, res.history)


# ------------------------------------------------------------------------------------------------
# walk-forward
# ------------------------------------------------------------------------------------------------


@dataclass
class FoundationWalkForwardResult(WalkForwardResult):
    """:class:`kit.training.WalkForwardResult` plus the quantile forecasts.

    ``forecasts`` holds the median (q50) ``{h: (T_test, N)}``; ``quantile_forecasts`` holds
    ``{q: {h: (T_test, N) DataFrame}}`` for q in (0.1, 0.5, 0.9); ``features`` is None (the input is
    the close itself) and ``last_model`` the last fold's torch module.
    """

    quantile_forecasts: dict = None


def walk_forward_foundation(
    close: pd.DataFrame,
    adapter: ForecasterAdapter,
    *,
    test_start,
    test_size: int = 252,
    test_end=None,
    val_fraction: float = 0.1,
    context_length: int = 512,
    horizons=HORIZONS,
    train_start=None,
    min_train: int = 252,
    fine_tune_config: FineTuneConfig | None = None,
    progress: bool = False,
) -> FoundationWalkForwardResult:
    """A foundation model on the kit's walk-forward: quantile forecasts and positions per test block.

    Folds are :func:`kit.training.walk_forward_splits` with ``horizon = max(horizons)`` (the same
    splits and embargo as :func:`kit.training.walk_forward_ldtm`); each fold's leakage count must be
    0. Zero-shot (``fine_tune_config=None``) the model never changes, so every decision date is
    forecast once. With ``fine_tune_config`` each fold starts again from the given (pretrained)
    weights, is fine-tuned by :func:`fine_tune` on that fold's training windows
    (:func:`price_windows`, future path of ``max(horizons)`` steps, which the split's embargo keeps
    out of the validation block) with early stopping on its validation windows, and forecasts that
    fold's validation and test dates.

    Positions: :func:`kit.training.ldtm_positions` on the 1-day median forecast divided by the daily
    ex-ante volatility (:func:`kit.features.ex_ante_vol` / sqrt(252)), with the scale fitted on the
    fold's validation forecasts only (:func:`position_scale`).

    Parameters
    ----------
    close : ``(T, N)`` DataFrame of adjusted closes (DatetimeIndex, symbols as columns; NaN where a
        symbol is not listed).
    adapter : a :class:`ForecasterAdapter` (not modified; fine-tuning works on copies).
    context_length : closes per context, ending at the decision date (1 is the date itself).
        A date whose context is not complete has no forecast and no position (NaN).
    horizons : forecast horizons in trading days; the first is used for positions.
    Others as :func:`kit.training.walk_forward_splits`.

    Returns
    -------
    :class:`FoundationWalkForwardResult`: ``positions`` ``(T_test, N)``, ``forecasts`` (median)
    and ``quantile_forecasts`` per horizon, one ``folds`` row per fold (dates, leakage rows,
    forecasts made, position scale, test forecasts whose raw quantiles crossed and were
    rearranged, fine-tuning losses, seconds; zero-shot, the forecasting time of all folds is in the
    first row's ``forecast_seconds_all_folds``) and the fine-tuning curves in ``history``.

    Raises
    ------
    LeakageError
        A fold's leakage count is not 0.
    ValueError
        ``close`` not a DataFrame with a sorted DatetimeIndex, bad ``context_length`` or horizons.
    """
    if not isinstance(close, pd.DataFrame) or not isinstance(close.index, pd.DatetimeIndex):
        raise ValueError(f"close must be a (T, N) DataFrame with a DatetimeIndex, got {type(close).__name__}")
    if int(context_length) != context_length or context_length < adapter.min_context:
        raise ValueError(f"context_length must be an integer >= {adapter.min_context} for {adapter.model_name}, got {context_length!r}")
    L = int(context_length)
    hs = _check_horizons(horizons, adapter.max_horizon)
    H = max(hs)
    c = close.to_numpy(dtype="float64")
    dates, symbols = close.index, close.columns
    vol = ex_ante_vol(daily_returns(close))
    daily_vol = vol.to_numpy(dtype="float64") / np.sqrt(252.0)
    splits = walk_forward_splits(dates, test_start, test_size, test_end, val_fraction, horizon=H, train_start=train_start, min_train=min_train)

    cache = None
    if fine_tune_config is None:  # the model is the same in every fold: forecast each date once
        need = np.unique(np.concatenate([np.r_[np.arange(*s.val), np.arange(*s.test)] for s in splits]))
        t0 = time.perf_counter()
        fc, crossed = forecast_dates(adapter, c, need, L, hs, progress=progress, return_crossings=True)
        cache = (need, fc, time.perf_counter() - t0, crossed)

    pos_blocks, logs, curves = [], [], []
    q_blocks = {q: {h: [] for h in hs} for q in QUANTILES}
    last_model = adapter.model
    iterator = splits
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(splits, desc=f"walk-forward folds ({adapter.kind})")
    for split in iterator:
        t_start = time.perf_counter()
        leak = count_leakage(split)
        if leak:
            raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
        v0, v1 = split.val
        s0, s1 = split.test
        info = split.describe(dates)
        info.update(model=f"foundation_{adapter.kind}", leakage_rows=leak, context_length=L)
        if cache is None:
            model = copy.deepcopy(adapter)
            ft = fine_tune_config
            tr = price_windows(c, *split.train, L, H, ft.window_stride, ft.max_train_windows)
            va = price_windows(c, v0, v1, L, H, ft.window_stride, ft.max_val_windows)
            if len(tr[0]) == 0 or len(va[0]) == 0:
                raise ValueError(f"fold {split.fold}: no complete {L}+{H}-day windows to fine-tune on (train {len(tr[0])}, val {len(va[0])})")
            res = fine_tune(model, tr[:2], va[:2], config=ft)
            info.update(
                fine_tuned=True, train_windows=len(tr[0]), val_windows=len(va[0]), val_loss_zero_shot=res.val_loss_zero_shot,
                val_loss=res.best_val_loss, best_epoch=res.best_epoch, epochs_run=res.epochs_run,
            )
            curves.extend({"fold": split.fold, "model": info["model"], **h} for h in res.history)
            fv = forecast_dates(model, c, np.arange(v0, v1), L, hs)
            ft_ = forecast_dates(model, c, np.arange(s0, s1), L, hs)
            crossings = model.last_crossings
            last_model = model.model
        else:
            need, fc, _, crossed = cache
            fv = fc[np.searchsorted(need, np.arange(v0, v1))]
            k = np.searchsorted(need, np.arange(s0, s1))
            ft_ = fc[k]
            crossings = crossed[k].sum()
            info.update(fine_tuned=False)
        med = QUANTILES.index(0.5)
        scale = position_scale(fv[:, :, 0, med], daily_vol[v0:v1])
        pos = ldtm_positions(ft_[:, :, 0, med], daily_vol[s0:s1], scale)
        test_dates = dates[s0:s1]
        pos_blocks.append(pd.DataFrame(pos, index=test_dates, columns=symbols))
        for qi, q in enumerate(QUANTILES):
            for hi, h in enumerate(hs):
                q_blocks[q][h].append(pd.DataFrame(ft_[:, :, hi, qi], index=test_dates, columns=symbols))
        info.update(
            test_forecasts=int(np.isfinite(ft_[:, :, 0, med]).sum()),
            val_forecasts=int(np.isfinite(fv[:, :, 0, med]).sum()),
            position_scale=scale,
            crossings_rearranged=int(crossings),
            seconds=round(time.perf_counter() - t_start, 2),
        )
        logs.append(info)
    if cache is not None and logs:
        logs[0]["forecast_seconds_all_folds"] = round(cache[2], 2)
    quantile_forecasts = {q: {h: pd.concat(b) for h, b in d.items()} for q, d in q_blocks.items()}
    config = {
        "model": f"foundation_{adapter.kind}",
        "adapter": adapter.card(hash_weights=False),
        "test_start": str(test_start),
        "test_end": str(test_end) if test_end is not None else None,
        "test_size": test_size,
        "val_fraction": val_fraction,
        "context_length": L,
        "horizons": list(hs),
        "quantiles": list(QUANTILES),
        "input": "prices (adjusted close), divided by the close at the decision date",
        "fine_tune": asdict(fine_tune_config) if fine_tune_config is not None else None,
    }
    return FoundationWalkForwardResult(
        positions=pd.concat(pos_blocks),
        folds=pd.DataFrame(logs),
        feature_names=["close"],
        ex_ante_vol=vol,
        config=config,
        history=pd.DataFrame(curves),
        last_model=last_model,
        features=None,
        forecasts=quantile_forecasts[0.5],
        quantile_forecasts=quantile_forecasts,
    )
