"""Time-series foundation models as forecasters: Chronos-Bolt and TimesFM 2.5 behind one adapter,
loaded from local weights only.

Contract: at a decision date t, for each symbol, quantiles 0.1, 0.5 and 0.9
(:data:`kit.conventions.FORECAST_QUANTILES`) of the simple return ``close_{t+h} / close_t - 1`` for
each horizon h (default 1, 5 and 21 trading days, :data:`kit.conventions.FORECAST_HORIZONS`), made
from closes up to t only. The walk-forward, the position rule and registration are in
:mod:`kit.training.foundation`.

Inputs are PRICES. :meth:`ForecasterAdapter.forecast` takes ``(N, L)`` adjusted closes (positive)
ending at the decision date and returns ``(N, H, 3)`` return quantiles. Inside, the context is
divided by its last close (a relative price path ending at 1.0); both models normalise each series
by its own location and scale, so the forecast does not depend on the price level (a test checks
this). A model forecasts the marginal quantile of the *level* at each step t+h; ``q / 1.0 - 1`` is
then exactly the same quantile of the h-day simple return (a monotone map), which would not hold for
a model fed daily returns (the quantile of a sum is not the sum of quantiles).

Offline by design: weights are read from a local folder ``weights_dir / <checkpoint>``
(:func:`kit.paths.weights_dir`: a profile's ``model_dir``, else ``$KIT_MODEL_DIR``, else
``<state dir>/models``) with ``local_files_only=True``; nothing is downloaded at run time. A missing
folder raises :class:`MissingWeightsError`, naming the model, the folder and the one ``hf download``
command that fetches it. The libraries are the optional extra ``pip install -e '.[foundation]'``;
this module imports without them, and building or loading a model then raises
:class:`FoundationDependencyError`, which names the extra.

Why TimesFM through ``transformers`` (``TimesFm2_5ModelForPrediction``) and not the ``timesfm``
package: ``transformers`` is already required by ``chronos-forecasting`` (no extra package), its
config class builds a model of any size (the tests need tiny random ones; the ``timesfm`` package's
torch module has its sizes fixed), it loads and saves with ``from_pretrained(local_files_only=True)``
and ``save_pretrained``, and the TimesFM 2.5 weights it reads are Apache-2.0.

Sources
-------
Chronos-Bolt: Ansari et al. (2024), "Chronos: Learning the Language of Time Series", TMLR, and the
Chronos-Bolt models of the ``chronos-forecasting`` package (patched T5 encoder-decoder, direct
multi-step quantile head). TimesFM 2.5: Das, Kong, Sen & Zhou (2024), "A decoder-only foundation
model for time-series forecasting", ICML, in ``transformers``. Quantile rearrangement: Chernozhukov,
Fernandez-Val & Galichon (2010), "Quantile and probability curves without crossing", Econometrica
78(3).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..conventions import FORECAST_HORIZONS, FORECAST_QUANTILES
from ..paths import weights_dir

__all__ = [
    "QUANTILES",
    "CHECKPOINTS",
    "MissingWeightsError",
    "FoundationDependencyError",
    "download_command",
    "resolve_weights",
    "weight_files",
    "weights_sha256",
    "rearrange_quantiles",
    "check_horizons",
    "ForecasterAdapter",
    "ChronosBoltAdapter",
    "TimesFMAdapter",
    "ADAPTERS",
    "adapter_class",
    "load_adapter",
    "adapter_for",
    "build_module",
]

QUANTILES = FORECAST_QUANTILES
"""Quantile levels every adapter returns, in this order (0.1, 0.5, 0.9)."""

CHECKPOINTS = {
    "chronos-bolt-tiny": ("chronos_bolt", "amazon/chronos-bolt-tiny"),
    "chronos-bolt-mini": ("chronos_bolt", "amazon/chronos-bolt-mini"),
    "chronos-bolt-small": ("chronos_bolt", "amazon/chronos-bolt-small"),
    "chronos-bolt-base": ("chronos_bolt", "amazon/chronos-bolt-base"),
    "timesfm-2.5-200m-transformers": ("timesfm", "google/timesfm-2.5-200m-transformers"),
}
"""Known checkpoints: local folder name -> (catalogue name, Hugging Face repository id). The folder
name is the repository's name, so ``hf download REPO --local-dir <weights dir>/NAME`` puts it where
:func:`resolve_weights` looks."""

_EXTRA_HINT = "install the optional extra: pip install -e '.[foundation]'"
_CONFIG_DROP = ("transformers_version", "_name_or_path")


class MissingWeightsError(FileNotFoundError):
    """A model's weight folder is missing or incomplete; the message names the model and the folder
    and gives the command that downloads it."""


class FoundationDependencyError(ImportError):
    """The optional ``[foundation]`` libraries are not installed."""


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise FoundationDependencyError(f"kit.models.foundation needs {module!r}: {_EXTRA_HINT}") from exc


# ------------------------------------------------------------------------------------------------
# local weights
# ------------------------------------------------------------------------------------------------


def download_command(name: str, folder) -> str:
    """The one shell command that downloads checkpoint ``name`` (a key of :data:`CHECKPOINTS`) into
    ``folder``. ``hf`` is the command-line tool of ``huggingface_hub`` (>= 1.0; it replaced
    ``huggingface-cli``).

    Raises
    ------
    ValueError
        Unknown checkpoint name (lists the known ones).
    """
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint name {name!r}; known: {sorted(CHECKPOINTS)}")
    return f"hf download {CHECKPOINTS[name][1]} --local-dir {folder}"


def weight_files(folder) -> list[Path]:
    """The weight files of a checkpoint folder (``*.safetensors``, else ``pytorch_model*.bin``),
    sorted by name."""
    folder = Path(folder)
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def weights_sha256(folder) -> str:
    """sha256 (hex) of the weight files of ``folder`` read one after the other in name order: the
    identity of a checkpoint's weights, recorded by the registry instead of a copy of them."""
    h = hashlib.sha256()
    for f in weight_files(folder):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _check_folder(folder: Path, model: str, name: str | None) -> Path:
    """``folder`` when it holds ``config.json`` and weights, else :class:`MissingWeightsError`."""
    if folder.is_dir() and (folder / "config.json").is_file() and weight_files(folder):
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
        "(the folder is <weights dir>/<checkpoint>: the profile's model_dir, else $KIT_MODEL_DIR, else <state dir>/models)"
    )


def resolve_weights(name: str, model_dir=None) -> Path:
    """The local folder of checkpoint ``name``: :func:`kit.paths.weights_dir` ``(model_dir) / name``.

    Parameters
    ----------
    name : a key of :data:`CHECKPOINTS` (e.g. ``"chronos-bolt-small"``) or any folder name.
    model_dir : parent folder (a profile's ``model_dir``); default ``$KIT_MODEL_DIR``, else
        ``<state dir>/models``.

    Returns
    -------
    Path of a folder holding ``config.json`` and weights.

    Raises
    ------
    ValueError
        ``name`` is not a plain folder name.
    MissingWeightsError
        The folder or its files are missing; the message names the model, the folder and the
        download command.
    """
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"name must be a folder name such as 'chronos-bolt-small', got {name!r}")
    return _check_folder(weights_dir(model_dir) / name, name, name)


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
    (sorted float64 copy, number of curves ``(...)`` that crossed).
    """
    q = np.asarray(q, dtype="float64")
    crossed = int((np.diff(q, axis=-1) < 0).any(axis=-1).sum()) if q.shape[-1] > 1 else 0
    return np.sort(q, axis=-1), crossed


def _level_index(levels, wanted=QUANTILES) -> list[int]:
    out = []
    for q in wanted:
        hit = [i for i, v in enumerate(levels) if math.isclose(float(v), q, abs_tol=1e-9)]
        if not hit:
            raise ValueError(f"the model's quantile levels {list(levels)} do not include {q}; the kit needs {list(wanted)}")
        out.append(hit[0])
    return out


def check_horizons(horizons, max_horizon: int) -> tuple[int, ...]:
    """``horizons`` as a tuple of ints after checking them.

    Raises
    ------
    ValueError
        Not distinct positive integers, or one above ``max_horizon`` (the model's prediction length).
    """
    try:
        hs = tuple(int(h) for h in horizons)
        same = all(h == float(x) for h, x in zip(hs, horizons, strict=True))
    except (TypeError, ValueError):
        raise ValueError(f"horizons must be positive integers, got {horizons!r}") from None
    if not hs or not same or any(h < 1 for h in hs) or len(set(hs)) != len(hs):
        raise ValueError(f"horizons must be distinct positive integers, got {horizons!r}")
    if max(hs) > max_horizon:
        raise ValueError(f"horizon {max(hs)} exceeds the model's prediction length {max_horizon}")
    return hs


# ------------------------------------------------------------------------------------------------
# adapters
# ------------------------------------------------------------------------------------------------


class ForecasterAdapter:
    """A pretrained time-series model behind the kit's quantile-forecaster contract.

    Subclasses implement :meth:`quantile_path` (relative price path -> quantiles of the next P
    levels, differentiable, for forecasting and fine-tuning) and the building and loading hooks.

    Parameters
    ----------
    model : the torch module (a ``transformers`` ``PreTrainedModel``).
    source : where the weights came from: a local folder, or ``"random:<seed>"`` for a tiny model.
    batch_size : series per forward pass in :meth:`forecast`.

    Attributes
    ----------
    name : catalogue name (``"chronos_bolt"``, ``"timesfm"``); ``model_name`` the label in reports.
    quantiles : ``(0.1, 0.5, 0.9)``, the levels :meth:`forecast` returns.
    last_crossings : number of (series, horizon) forecasts whose raw quantiles crossed in the last
        :meth:`forecast` call (they were rearranged); ``last_crossings_per_series`` the same per
        series, ``(N,)`` int.
    fine_tuned : whether :func:`kit.training.foundation.fine_tune` changed the weights.

    Raises
    ------
    ValueError
        ``batch_size`` < 1, or a model whose quantile head lacks 0.1, 0.5 or 0.9.
    """

    name = "base"
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
        self._weights_sha256 = None
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
    def config_from_dict(cls, config: dict):
        """The ``transformers`` config object of a config dict (:meth:`config_dict`'s output)."""
        raise NotImplementedError

    @classmethod
    def tiny_config(cls, **overrides):
        """A config of the model's architecture with a few thousand parameters, for tests and
        benchmarks."""
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

    @property
    def checkpoint(self) -> str:
        """The checkpoint's folder name (``"chronos-bolt-small"``), or ``"random:<seed>"``."""
        return self.source if self.source.startswith("random:") or not self.source else Path(self.source).name

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weight files the model was loaded from (:func:`weights_sha256`; None for a
        random model). Computed once, on first use: the weights of the model as loaded, also after
        fine-tuning (the base of the tuned weights)."""
        if self._weights_sha256 is None and self.source and not self.source.startswith("random:") and Path(self.source).is_dir():
            self._weights_sha256 = weights_sha256(self.source)
        return self._weights_sha256

    def config_dict(self) -> dict:
        """The model's full ``transformers`` config as plain JSON values (without the library
        version and the load path, so that it identifies the architecture)."""
        d = json.loads(self.model.config.to_json_string(use_diff=False))
        return {k: v for k, v in d.items() if k not in _CONFIG_DROP}

    @classmethod
    def from_module(cls, model: nn.Module, *, source: str = "", batch_size: int = 256):
        """An adapter around an already built (or loaded, e.g. from the registry) module."""
        return cls(model, source=source, batch_size=batch_size)

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
    def from_weights_dir(cls, checkpoint: str | None = None, model_dir=None, **kwargs):
        """Load ``checkpoint`` (a folder name, default :attr:`default_checkpoint`) from
        :func:`kit.paths.weights_dir` ``(model_dir)``.

        Raises
        ------
        MissingWeightsError
            As :meth:`from_local_dir`.
        """
        checkpoint = checkpoint or cls.default_checkpoint
        folder = weights_dir(model_dir) / checkpoint
        _check_folder(folder, f"{cls.model_name} ({checkpoint})", checkpoint)
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
        """Write ``config.json`` and ``model.safetensors`` to the folder ``path`` (replacing it
        whole, atomically: written beside it, then renamed); :meth:`from_local_dir` reads them back."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self.model.save_pretrained(tmp)
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{tmp.name[-8:]}")
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return path

    def card(self) -> dict:
        """JSON-able description, the model's ``architecture`` in the registry: catalogue name,
        label, checkpoint folder name, sha256 of the weights loaded, parameter count, quantiles,
        maximum context and horizon, whether fine-tuned, and the full model config. No absolute
        path, so the same weights give the same card on any machine."""
        return {
            "model": self.name,
            "model_name": self.model_name,
            "checkpoint": self.checkpoint,
            "weights_sha256": self.weights_sha256,
            "n_parameters": self.n_parameters,
            "quantiles": list(self.quantiles),
            "model_quantiles": list(self.model_quantiles),
            "max_horizon": self.max_horizon,
            "max_context": self.max_context,
            "fine_tuned": self.fine_tuned,
            "config": self.config_dict(),
        }

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

    def forecast(self, context, horizons=FORECAST_HORIZONS) -> np.ndarray:
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
        weights) gives a return <= -1, which :func:`kit.store.ledger.snapshot` refuses.

        Raises
        ------
        ValueError
            Context not 2-D, too short, or holding a non-positive or non-finite price; bad horizons.
        """
        c = self._check_context(context)
        hs = check_horizons(horizons, self.max_horizon)
        L = min(c.shape[1], self.max_context)
        rel = np.ascontiguousarray((c / c[:, -1:])[:, -L:], dtype=np.float32)
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

    name = "chronos_bolt"
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
    def _check_config(cls, cfg, where: str) -> None:
        cc = getattr(cfg, "chronos_config", None)
        arch = (getattr(cfg, "architectures", None) or [""])[0]
        if not isinstance(cc, dict) or "input_patch_size" not in cc or arch != "ChronosBoltModelForForecasting":
            raise ValueError(
                f"{where} does not hold a Chronos-Bolt checkpoint (architecture {arch!r}, "
                f"pipeline {getattr(cfg, 'chronos_pipeline_class', None)!r})"
            )

    @classmethod
    def _load(cls, folder: Path) -> nn.Module:
        transformers = _require("transformers")
        bolt = _require("chronos.chronos_bolt")
        cls._check_config(transformers.AutoConfig.from_pretrained(folder, local_files_only=True), str(folder))
        return bolt.ChronosBoltModelForForecasting.from_pretrained(folder, local_files_only=True, dtype=torch.float32)

    @classmethod
    def config_from_dict(cls, config: dict):
        cfg = _require("transformers").T5Config.from_dict(dict(config))
        cls._check_config(cfg, "the config")
        return cfg

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
        return _require("chronos.chronos_bolt").ChronosBoltModelForForecasting(config)


class TimesFMAdapter(ForecasterAdapter):
    """TimesFM 2.5 through ``transformers``' ``TimesFm2_5ModelForPrediction``.

    A decoder-only transformer over patches of 32 (with reversible instance normalisation) and a
    head giving the mean and the 0.1..0.9 quantiles of the next ``horizon_length`` (128) values;
    flip-invariance averaging is on, as in the published configuration. Published:
    ``google/timesfm-2.5-200m-transformers`` (200M parameters plus a 30M quantile head, context up
    to 16k).

    The model splits its context into patches of ``patch_length``; a context that is not a multiple
    of it would be front-padded with zeros that also enter the model's global mean and standard
    deviation, so the adapter reads the last ``floor(L / patch_length) * patch_length`` dates instead.
    """

    name = "timesfm"
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
    def _check_config(cls, cfg, where: str) -> None:
        if getattr(cfg, "model_type", None) != "timesfm2_5":
            raise ValueError(f"{where} does not hold a TimesFM 2.5 checkpoint (model_type {getattr(cfg, 'model_type', None)!r})")

    @classmethod
    def _load(cls, folder: Path) -> nn.Module:
        transformers = _require("transformers")
        cls._check_config(transformers.AutoConfig.from_pretrained(folder, local_files_only=True), str(folder))
        return transformers.TimesFm2_5ModelForPrediction.from_pretrained(folder, local_files_only=True, dtype=torch.float32)

    @classmethod
    def config_from_dict(cls, config: dict):
        d = dict(config)
        if d.get("model_type", "timesfm2_5") != "timesfm2_5":
            raise ValueError(f"the config does not hold a TimesFM 2.5 checkpoint (model_type {d.get('model_type')!r})")
        return _require("transformers").TimesFm2_5Config.from_dict(d)

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
        return _require("transformers").TimesFm2_5ModelForPrediction(config)


ADAPTERS = {"chronos_bolt": ChronosBoltAdapter, "timesfm": TimesFMAdapter}
"""Catalogue name -> adapter class."""


def adapter_class(name: str) -> type[ForecasterAdapter]:
    """The adapter class of a catalogue name (``"chronos_bolt"``, ``"timesfm"``) or of a checkpoint
    folder name of :data:`CHECKPOINTS`.

    Raises
    ------
    ValueError
        Neither (lists both).
    """
    if name in ADAPTERS:
        return ADAPTERS[name]
    if name in CHECKPOINTS:
        return ADAPTERS[CHECKPOINTS[name][0]]
    raise ValueError(f"unknown foundation model {name!r}; models: {sorted(ADAPTERS)}, checkpoints: {sorted(CHECKPOINTS)}")


def load_adapter(name: str, model_dir=None, *, checkpoint: str | None = None, **kwargs) -> ForecasterAdapter:
    """An adapter with pretrained weights read from the local weights folder.

    Parameters
    ----------
    name : catalogue name (``"chronos_bolt"``, ``"timesfm"``: their :attr:`default_checkpoint`) or a
        checkpoint folder name of :data:`CHECKPOINTS` (e.g. ``"chronos-bolt-base"``).
    model_dir : the weights folder (a profile's ``model_dir``); default :func:`kit.paths.weights_dir`.
    checkpoint : folder name to read instead of the default one (with a catalogue name).
    kwargs : ``batch_size``, ``device``.

    Raises
    ------
    ValueError
        Unknown name.
    MissingWeightsError
        The folder or its files are missing (the message gives the download command).
    FoundationDependencyError
        The ``[foundation]`` extra is not installed.
    """
    cls = adapter_class(name)
    folder = checkpoint or (name if name in CHECKPOINTS else cls.default_checkpoint)
    return cls.from_weights_dir(folder, model_dir, **kwargs)


def adapter_for(model: nn.Module, *, source: str = "", batch_size: int = 256) -> ForecasterAdapter:
    """The adapter around a module of either family (e.g. a model loaded from the registry with
    :func:`kit.store.registry.load_model`).

    Raises
    ------
    TypeError
        A module of neither family.
    """
    kind = type(model).__name__
    if kind == "ChronosBoltModelForForecasting":
        return ChronosBoltAdapter.from_module(model, source=source, batch_size=batch_size)
    if kind == "TimesFm2_5ModelForPrediction":
        return TimesFMAdapter.from_module(model, source=source, batch_size=batch_size)
    raise TypeError(f"{kind} is not a foundation model of the kit (Chronos-Bolt, TimesFM 2.5)")


def build_module(name: str, config: dict) -> nn.Module:
    """A randomly initialised module of catalogue model ``name`` from a config dict
    (:meth:`ForecasterAdapter.config_dict`); the catalogue's ``build`` for checkpoints that carry a
    state dict (fine-tuned weights)."""
    cls = adapter_class(name)
    return cls._build(cls.config_from_dict(config)).eval()
