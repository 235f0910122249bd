"""Model registry: candidate -> active -> retired, a promotion gate, versioned checkpoint files.

The lifecycle of seed 003 ("LDTM"): a trained model is registered as a ``candidate`` together with
its walk-forward metrics per fold; :func:`apply_gate` checks the metrics against thresholds and
either promotes it to ``active`` (the previous active model of the same scope becomes ``retired`` in
the same transaction) or leaves it a ``candidate`` with every failed criterion and its value on
record. Every transition is a row of the history table. The database allows at most one active
model per scope (a partial unique index), whatever the code does.

Versions
--------
A model is identified by ``(scope, name, major, trained_on)`` and labelled
``{scope}_{name}_v{major}.{trained_on}`` (e.g. ``AAPL_ldtm_v1.2021-04-21``); its checkpoint is copied
to ``{label}.pt`` in the model folder. ``scope`` is a ticker for per-ticker models or a universe name
(:func:`universe_scope`). ``major`` numbers the architectures of ``(scope, name)`` in order of first
registration: the first architecture registered is 1, the next different one 2, and returning to an
earlier architecture gets its old number back. The architecture is the checkpoint's model config
(``kit.models.*Config.to_dict()``) without the training-only keys (:data:`TRAINING_ONLY_KEYS`:
dropout, which changes no weight shape and does nothing at inference); its hash is the sha256 of
its JSON with sorted keys (:func:`architecture_hash`). ``trained_on`` is the last date of data the
model was fitted on (for a walk-forward result, the last fold's last validation date), so a
re-run on the same data gives the same version.

The gate pools folds: direction accuracy and MAPE are means over folds weighted by each fold's
number of calls ``n_obs``; leakage rows are summed; the optional benchmark criterion compares the
Sharpe ratios of the whole stitched out-of-sample period.

The fold metrics the gate reads are computed by :mod:`kit.analytics.evaluation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..analytics.evaluation import fold_metrics, oos_metrics
from ..base.atomic import atomic_path
from ..base.config import strict_dataclass
from ..base.faults import fault_point
from ..base.jsonable import jsonable
from ..models.catalogue import FOUNDATION_MODELS
from ..models.checkpoints import ensemble_payload, load_checkpoint, read_payload
from ..paths import model_dir, state_dir
from . import schema as S
from .engine import get_engine, read_tx, utc_now, write_tx

__all__ = [
    "RegistryError",
    "UnknownModelError",
    "DuplicateModelError",
    "InvalidTransitionError",
    "CheckpointMismatchError",
    "STATUSES",
    "TRAINING_ONLY_KEYS",
    "architecture_hash",
    "architecture_of",
    "universe_scope",
    "version_label",
    "GateThresholds",
    "GateDecision",
    "fold_metrics",
    "oos_metrics",
    "register",
    "register_walk_forward",
    "register_and_gate",
    "apply_gate",
    "retire",
    "get_model",
    "active_model",
    "list_models",
    "fold_table",
    "gate_results",
    "history",
    "load_model",
    "default_model_dir",
]

log = logging.getLogger(__name__)

STATUSES = ("candidate", "active", "retired")
TRAINING_ONLY_KEYS = frozenset({"dropout"})
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_SCOPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")
FOLD_COLUMNS = ("fold", "n_obs", "direction_accuracy", "leakage_rows")




class RegistryError(Exception):
    """Base class of the registry's errors."""


class UnknownModelError(RegistryError, LookupError):
    """No model with that id (or label) in the registry."""


class DuplicateModelError(RegistryError):
    """The version ``(scope, name, major, trained_on)`` is already registered."""


class InvalidTransitionError(RegistryError):
    """A status change the lifecycle does not allow (e.g. gating an active or retired model)."""


class CheckpointMismatchError(RegistryError):
    """A registered checkpoint file is missing or its sha256 differs from the one recorded."""


# ------------------------------------------------------------------------------------------------
# versions
# ------------------------------------------------------------------------------------------------


def architecture_of(config: dict) -> dict:
    """The architecture part of a model config: every key but :data:`TRAINING_ONLY_KEYS`, nested
    configs (ensemble members) likewise; tuples become lists.

    Raises
    ------
    ValueError
        ``config`` is not a mapping with a ``"model"`` key.
    """
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"config must be a dict with a 'model' key (a checkpoint's config), got {config!r}")

    def strip(obj):
        if isinstance(obj, dict):
            return {str(k): strip(v) for k, v in obj.items() if k not in TRAINING_ONLY_KEYS}
        if isinstance(obj, list | tuple):
            return [strip(v) for v in obj]
        return jsonable(obj)

    return strip(config)


def architecture_hash(config: dict) -> str:
    """sha256 (hex) of the JSON of :func:`architecture_of` ``(config)`` with sorted keys and no spaces.

    Two configs that differ only in training-only keys (dropout) or key order hash alike.
    """
    text = json.dumps(architecture_of(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def universe_scope(symbols, label: str = "universe") -> str:
    """A scope name for a model trained on several symbols: ``{label}{n}-{sha8}`` where ``sha8`` is
    the first 8 hex digits of the sha256 of the sorted, comma-joined symbols (e.g.
    ``universe6-1f0c2a9b``). The same set gives the same scope in any order.

    Raises
    ------
    ValueError
        No symbols, or a label that is not letters and digits.
    """
    syms = sorted({str(s) for s in symbols})
    if not syms:
        raise ValueError("symbols must not be empty")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,40}", label):
        raise ValueError(f"label must be letters and digits, got {label!r}")
    return f"{label}{len(syms)}-{hashlib.sha256(','.join(syms).encode()).hexdigest()[:8]}"


def version_label(scope: str, name: str, major: int, trained_on) -> str:
    """``{scope}_{name}_v{major}.{trained_on:%Y-%m-%d}``: the model's label and checkpoint stem."""
    return f"{scope}_{name}_v{int(major)}.{pd.Timestamp(trained_on).date().isoformat()}"


def default_model_dir(engine: sa.engine.Engine) -> Path:
    """Where registered checkpoints go: ``$KIT_MODEL_DIR`` when set; for a SQLite file database the
    folder ``<db stem>_models`` beside it (so each database has its own files); otherwise
    ``data/state/models`` in the repository."""
    env = model_dir()
    if env is not None:
        return env
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        p = Path(engine.url.database)
        return p.parent / f"{p.stem}_models"
    return state_dir() / "models"


# ------------------------------------------------------------------------------------------------
# gate
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateThresholds:
    """Promotion thresholds (defaults from seed 003).

    Attributes
    ----------
    min_direction_accuracy : pooled next-day direction accuracy must be >= this (0.52).
    max_mape : pooled next-day MAPE of the predicted price must be <= this (0.05); forecasters only.
    max_leakage_rows : total leakage rows over the folds must be <= this (0).
    min_folds : at least this many walk-forward folds (2).
    require_beat_benchmark : if True, the out-of-sample Sharpe ratio must exceed the long-only
        benchmark's on the same dates and symbols (False).
    cost_bps : basis points charged on every change of the volatility-scaled position before the
        out-of-sample Sharpe ratios are computed (5.0; :func:`kit.analytics.oos_metrics`). Those
        net ratios rank the candidates that pass (the best becomes active) and are what
        ``require_beat_benchmark`` compares, so a model whose edge is eaten by its turnover does not
        win on its gross Sharpe ratio.
    """

    min_direction_accuracy: float = 0.52
    max_mape: float = 0.05
    max_leakage_rows: int = 0
    min_folds: int = 2
    require_beat_benchmark: bool = False
    cost_bps: float = 5.0

    def __post_init__(self):
        if not 0.0 <= self.min_direction_accuracy <= 1.0:
            raise ValueError(f"min_direction_accuracy must be in [0, 1], got {self.min_direction_accuracy!r}")
        if not (isinstance(self.max_mape, int | float) and self.max_mape >= 0 and np.isfinite(self.max_mape)):
            raise ValueError(f"max_mape must be a finite number >= 0, got {self.max_mape!r}")
        if not (isinstance(self.max_leakage_rows, int | np.integer) and self.max_leakage_rows >= 0):
            raise ValueError(f"max_leakage_rows must be an integer >= 0, got {self.max_leakage_rows!r}")
        if not (isinstance(self.min_folds, int | np.integer) and self.min_folds >= 1):
            raise ValueError(f"min_folds must be an integer >= 1, got {self.min_folds!r}")
        if not isinstance(self.require_beat_benchmark, bool | np.bool_):
            raise ValueError(f"require_beat_benchmark must be True or False, got {self.require_beat_benchmark!r}")
        if isinstance(self.cost_bps, bool) or not (isinstance(self.cost_bps, int | float) and np.isfinite(self.cost_bps) and self.cost_bps >= 0):
            raise ValueError(f"cost_bps must be a finite number >= 0 (basis points), got {self.cost_bps!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> GateThresholds:
        """Thresholds from a params mapping; missing keys take the defaults.

        Raises
        ------
        ValueError
            (:class:`kit.base.ConfigError`) an unknown key, named with the nearest valid one; or a
            value out of range.
        """
        return strict_dataclass(cls, d, "gate")

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))


@dataclass
class GateDecision:
    """Outcome of :func:`apply_gate`.

    ``checks`` has one row per criterion: ``criterion, value, op, threshold, passed, detail``.
    ``retired_id`` is the previously active model of the scope that the promotion retired.
    """

    model_id: int
    label: str
    passed: bool
    status: str
    checks: pd.DataFrame
    evaluation_id: int
    retired_id: int | None = None

    @property
    def reasons(self) -> list[str]:
        """One line per failed criterion, e.g. ``direction_accuracy = 0.5100 (needs >= 0.5200)``."""
        out = []
        for r in self.checks[~self.checks["passed"]].itertuples():
            v = "missing" if r.value is None or pd.isna(r.value) else f"{r.value:.4f}"
            out.append(f"{r.criterion} = {v} (needs {r.op} {r.threshold:g})" + (f": {r.detail}" if r.detail else ""))
        return out

    def __repr__(self) -> str:  # pragma: no cover - display only
        head = f"GateDecision({self.label}: {'PASSED -> active' if self.passed else 'FAILED -> stays candidate'}"
        return head + ("" if self.passed else "; " + "; ".join(self.reasons)) + ")"


def _weighted(values: pd.Series, weights: pd.Series) -> float | None:
    ok = values.notna() & (weights > 0)
    if not ok.any():
        return None
    return float(np.average(values[ok].astype(float), weights=weights[ok].astype(float)))


def _evaluate(th: GateThresholds, model: dict, folds: pd.DataFrame) -> list[dict]:
    checks = []
    n = len(folds)
    checks.append({"criterion": "folds", "value": float(n), "op": ">=", "threshold": float(th.min_folds), "passed": n >= th.min_folds, "detail": None})
    leak = float(folds["leakage_rows"].sum()) if n else 0.0
    checks.append({"criterion": "leakage_rows", "value": leak, "op": "<=", "threshold": float(th.max_leakage_rows), "passed": leak <= th.max_leakage_rows, "detail": None})
    acc = _weighted(folds["direction_accuracy"], folds["n_obs"]) if n else None
    checks.append({
        "criterion": "direction_accuracy", "value": acc, "op": ">=", "threshold": th.min_direction_accuracy,
        "passed": acc is not None and acc >= th.min_direction_accuracy, "detail": None if acc is not None else "no directional calls in any fold",
    })
    if model["forecaster"]:
        mape = _weighted(folds["mape"], folds["n_obs"]) if n else None
        checks.append({
            "criterion": "mape", "value": mape, "op": "<=", "threshold": th.max_mape,
            "passed": mape is not None and mape <= th.max_mape, "detail": None if mape is not None else "forecaster without a recorded MAPE",
        })
    if th.require_beat_benchmark:
        s, b = model.get("oos_sharpe"), model.get("benchmark_sharpe")
        diff = None if s is None or b is None or not np.isfinite(s) or not np.isfinite(b) else float(s - b)
        checks.append({
            "criterion": "sharpe_minus_benchmark", "value": diff, "op": ">", "threshold": 0.0, "passed": diff is not None and diff > 0,
            "detail": None if diff is not None else "no out-of-sample Sharpe ratio (or benchmark) recorded",
        })
    return checks













def _validate_folds(folds: pd.DataFrame) -> list[dict]:
    if not isinstance(folds, pd.DataFrame):
        raise TypeError(f"folds must be a DataFrame (see fold_metrics), got {type(folds).__name__}")
    missing = [c for c in FOLD_COLUMNS if c not in folds.columns]
    if missing:
        raise ValueError(f"folds is missing column(s) {missing}; needs {list(FOLD_COLUMNS)}")
    if folds["fold"].duplicated().any():
        raise ValueError(f"folds has duplicate fold numbers: {sorted(folds['fold'][folds['fold'].duplicated()].tolist())}")
    out = []
    core = {"fold", "test_start", "test_end", "n_obs", "direction_accuracy", "mape", "leakage_rows", "sharpe_ratio", "benchmark_sharpe"}  # others: extra
    for r in folds.to_dict("records"):
        fold = r["fold"]
        n_obs, leak, acc = r["n_obs"], r["leakage_rows"], r["direction_accuracy"]
        if pd.isna(n_obs) or int(n_obs) != n_obs or n_obs < 0:
            raise ValueError(f"fold {fold}: n_obs must be an integer >= 0, got {n_obs!r}")
        if pd.isna(leak) or int(leak) != leak or leak < 0:
            raise ValueError(f"fold {fold}: leakage_rows must be an integer >= 0, got {leak!r}")
        if pd.isna(acc):
            if n_obs > 0:
                raise ValueError(f"fold {fold}: direction_accuracy is NaN with n_obs={n_obs}")
            acc = None
        elif not 0.0 <= acc <= 1.0:
            raise ValueError(f"fold {fold}: direction_accuracy must be in [0, 1], got {acc!r}")
        mape = r.get("mape")
        if mape is not None and not pd.isna(mape) and (not np.isfinite(mape) or mape < 0):
            raise ValueError(f"fold {fold}: mape must be a finite number >= 0, got {mape!r}")

        def opt(v):
            return None if v is None or pd.isna(v) else float(v)

        def day(v):
            return None if v is None or pd.isna(v) else pd.Timestamp(v).date()

        out.append({
            "fold": int(fold), "test_start": day(r.get("test_start")), "test_end": day(r.get("test_end")), "n_obs": int(n_obs),
            "direction_accuracy": None if acc is None else float(acc), "mape": opt(mape), "leakage_rows": int(leak),
            "sharpe_ratio": opt(r.get("sharpe_ratio")), "benchmark_sharpe": opt(r.get("benchmark_sharpe")),
            "extra": jsonable({k: v for k, v in r.items() if k not in core}) or None,
        })
    return out


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _history(conn, model_id: int, event: str, from_status, to_status: str, reason: str | None = None) -> None:
    conn.execute(S.model_history.insert().values(model_id=model_id, event=event, from_status=from_status, to_status=to_status, at=utc_now(), reason=reason))


def register(
    name: str,
    scope: str,
    checkpoint_path,
    trained_on,
    folds: pd.DataFrame,
    *,
    architecture: dict | None = None,
    forecaster: bool | None = None,
    oos_sharpe: float | None = None,
    benchmark_sharpe: float | None = None,
    extra: dict | None = None,
    model_dir=None,
    if_exists: str = "error",
    db=None,
) -> int:
    """Register a trained model as a ``candidate``; returns its id.

    The checkpoint is copied (atomically) to ``{model_dir}/{scope}_{name}_v{major}.{trained_on}.pt``
    and its sha256 recorded; the model row, its folds and the history row are written in one
    transaction (a crash leaves at most an unreferenced copy, which the next registration of the
    same version replaces).

    Parameters
    ----------
    name : model name, lower case letters, digits and ``_`` (e.g. ``dmn_lstm``, ``ldtm``).
    scope : a ticker or a universe name (:func:`universe_scope`): letters, digits, ``.`` and ``-``
        (no ``_``, which separates the parts of the label).
    checkpoint_path : the trained checkpoint (:func:`kit.models.save_checkpoint`'s file).
    trained_on : date-like, last date of the training data.
    folds : per-fold metrics (:func:`fold_metrics`): ``fold, n_obs, direction_accuracy,
        leakage_rows`` and optionally ``test_start, test_end, mape, sharpe_ratio,
        benchmark_sharpe``; other columns go to the fold's ``extra`` JSON.
    architecture : the model config; default: the checkpoint's ``architecture`` when it has one (a
        foundation model's card, :meth:`kit.models.foundation.ForecasterAdapter.card`: config,
        checkpoint name and weights sha256), else its ``config``.
    forecaster : whether the MAPE criterion applies; default: ``architecture["model"]`` is ``ldtm``
        or a foundation model, or any fold has a MAPE.
    oos_sharpe, benchmark_sharpe : whole out-of-sample Sharpe ratios (:func:`oos_metrics`, net of
        the costs named in ``extra["cost_bps"]``), for the ranking of candidates and the optional
        benchmark criterion.
    extra : JSON-able mapping stored with the model (run id, configuration, ...).
    model_dir : folder for the versioned checkpoints (default :func:`default_model_dir`).
    if_exists : ``"error"`` (raise :class:`DuplicateModelError`) or ``"skip"`` (return the id of the
        version already registered, writing nothing) when the version exists.
    db : URL, Engine or None (default database).

    Raises
    ------
    ValueError
        Bad name, scope, date, folds (NaN accuracy with calls, negative counts, accuracy outside
        [0, 1]) or ``if_exists``.
    FileNotFoundError
        ``checkpoint_path`` does not exist.
    DuplicateModelError
        The version is registered already (with ``if_exists="error"``).
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"name must be lower-case letters, digits and _ (at most 64), got {name!r}")
    if not isinstance(scope, str) or not _SCOPE_RE.match(scope):
        raise ValueError(f"scope must be letters, digits, . and - (no _; at most 64), got {scope!r}")
    if if_exists not in ("error", "skip"):
        raise ValueError(f"if_exists must be 'error' or 'skip', got {if_exists!r}")
    try:
        trained = pd.Timestamp(trained_on).date()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"trained_on must be a date, got {trained_on!r}") from exc
    src = Path(checkpoint_path)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint_path not found: {str(src)!r}")
    fold_rows = _validate_folds(folds)
    if architecture is None:
        payload = read_payload(src)  # weights_only: nothing in the file runs
        architecture = payload.get("architecture") or payload["config"]
    arch = architecture_of(architecture)
    ahash = architecture_hash(architecture)
    if forecaster is None:
        forecaster = arch.get("model") in ("ldtm", *FOUNDATION_MODELS) or any(r["mape"] is not None for r in fold_rows)
    for name_, v in (("oos_sharpe", oos_sharpe), ("benchmark_sharpe", benchmark_sharpe)):
        if v is not None and not np.isfinite(v):
            raise ValueError(f"{name_} must be finite or None, got {v!r}")
    sha = _sha256_file(src)
    engine = get_engine(db)
    target_dir = Path(model_dir) if model_dir is not None else default_model_dir(engine)
    copied = None
    try:
        with write_tx(engine, "registry") as conn:
            av = S.arch_versions
            major = conn.execute(sa.select(av.c.major).where(av.c.scope == scope, av.c.name == name, av.c.arch_hash == ahash)).scalar()
            if major is None:
                major = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(av.c.major), 0)).where(av.c.scope == scope, av.c.name == name)).scalar()) + 1
                conn.execute(av.insert().values(scope=scope, name=name, arch_hash=ahash, major=major, architecture=arch, first_registered_at=utc_now()))
            label = version_label(scope, name, major, trained)
            m = S.models
            existing = conn.execute(sa.select(m.c.id).where(m.c.scope == scope, m.c.name == name, m.c.major == major, m.c.trained_on == trained)).scalar()
            if existing is not None:
                if if_exists == "skip":
                    return int(existing)
                raise DuplicateModelError(f"model {label} is already registered (id {existing}); a new version needs a new trained_on date or architecture")
            dst = target_dir / f"{label}.pt"
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            copied = dst
            res = conn.execute(m.insert().values(
                name=name, scope=scope, arch_hash=ahash, major=major, trained_on=trained, version=f"v{major}.{trained.isoformat()}",
                label=label, status="candidate", forecaster=bool(forecaster), checkpoint_path=str(dst), checkpoint_sha256=sha,
                source_checkpoint=str(src), oos_sharpe=None if oos_sharpe is None else float(oos_sharpe),
                benchmark_sharpe=None if benchmark_sharpe is None else float(benchmark_sharpe), registered_at=utc_now(),
                extra=jsonable(extra) if extra else None,
            ))
            model_id = int(res.inserted_primary_key[0])
            if fold_rows:
                conn.execute(S.model_folds.insert(), [{"model_id": model_id, **r} for r in fold_rows])
            _history(conn, model_id, "registered", None, "candidate", f"{len(fold_rows)} fold(s), architecture {ahash[:12]}")
            fault_point("registry.register_before_commit")
    except BaseException:
        if copied is not None and copied.exists():
            copied.unlink()
        raise
    log.info("registered %s as candidate (id %d)", label, model_id)
    return model_id


def _last_fold_checkpoints(result, name: str) -> tuple[list[str], dict | None]:
    folds = result.folds
    if "checkpoint" not in folds.columns:
        return [], None
    last = folds[folds["fold"] == folds["fold"].max()]
    paths = [p for p in last.loc[last["model"] != "ensemble", "checkpoint"].dropna().tolist()] if "model" in last else last["checkpoint"].dropna().tolist()
    weights = None
    if name == "ensemble" and "weights" in last.columns:
        w = last.loc[last["model"] == "ensemble", "weights"].dropna()
        weights = w.iloc[0] if len(w) else None
    return paths, weights


def register_walk_forward(
    result,
    close: pd.DataFrame,
    scope: str,
    *,
    model_name: str | None = None,
    checkpoint_path=None,
    trained_on=None,
    forecasts: dict | None = None,
    extra: dict | None = None,
    model_dir=None,
    if_exists: str = "error",
    cost_bps: float = GateThresholds.cost_bps,
    db=None,
) -> int:
    """Register a :class:`kit.training.WalkForwardResult` as a candidate: computes
    :func:`fold_metrics` and :func:`oos_metrics` from ``close`` net of ``cost_bps`` (basis points
    on the change of the volatility-scaled position, default 5) and calls :func:`register`; the
    model's ``extra`` records ``cost_bps`` and ``oos_sharpe_gross`` (before costs).

    Defaults: ``model_name`` = ``result.config["model"]``; ``checkpoint_path`` = the last fold's
    checkpoint (for an ensemble, a bundle of the last fold's member checkpoints and weights written
    to a temporary file: ``{"config": {"model": "ensemble", "members": [...], ...}, "members":
    [payloads], "weights": {...}}``); ``trained_on`` = the last fold's last validation date.

    Raises
    ------
    ValueError
        No checkpoint given or recorded (train with ``checkpoint_dir``), or as :func:`register`.
    """
    name = model_name or result.config.get("model")
    folds_df = fold_metrics(result, close, forecasts=forecasts, cost_bps=cost_bps)
    oos = oos_metrics(result, close, forecasts=forecasts, cost_bps=cost_bps)
    if trained_on is None:
        last = result.folds[result.folds["fold"] == result.folds["fold"].max()]
        trained_on = last["val_end"].dropna().iloc[0] if "val_end" in last and last["val_end"].notna().any() else None
        if trained_on is None:
            raise ValueError("trained_on not given and result.folds has no val_end")
    info = {"walk_forward_config": result.config, "feature_names": list(getattr(result, "feature_names", []) or []),
            "cost_bps": oos["cost_bps"], "oos_sharpe_gross": oos["gross_sharpe_ratio"]}
    info.update(extra or {})
    kw = dict(trained_on=trained_on, folds=folds_df, oos_sharpe=oos["sharpe_ratio"], benchmark_sharpe=oos["benchmark_sharpe"], extra=info, model_dir=model_dir, if_exists=if_exists, db=db)
    if checkpoint_path is not None:
        return register(name, scope, checkpoint_path, **kw)
    paths, weights = _last_fold_checkpoints(result, name)
    if not paths:
        raise ValueError("no checkpoint_path given and result.folds records none (run walk_forward with checkpoint_dir)")
    if name != "ensemble":
        return register(name, scope, paths[0], **kw)
    import torch

    payload = ensemble_payload(paths, weights, result.config.get("ensemble_method"))
    with tempfile.TemporaryDirectory(prefix="kit-ensemble-") as tmp:
        bundle = Path(tmp) / "ensemble.pt"
        torch.save(payload, bundle)
        return register(name, scope, bundle, architecture=payload["config"], **kw)


def register_and_gate(
    results: dict,
    close: pd.DataFrame,
    scope: str,
    thresholds: GateThresholds | dict | None = None,
    *,
    if_exists: str = "skip",
    extra: dict | None = None,
    model_dir=None,
    db=None,
) -> pd.DataFrame:
    """Register every walk-forward result of a training run as a candidate and apply the gate: the
    one call a training notebook makes.

    Candidates go through the gate in increasing order of out-of-sample Sharpe ratio net of the
    thresholds' ``cost_bps`` (undefined first), so that when several pass, the one with the highest
    net ratio ends ``active`` and the others ``retired`` (one active model per scope). A version registered and gated before (same
    architecture and training data end; ``if_exists="skip"``) is reported with its current status
    and not gated again; one registered but never gated (a run stopped in between) is gated now.

    Parameters
    ----------
    results : mapping model name -> :class:`kit.training.WalkForwardResult` (trained with a
        ``checkpoint_dir``).
    close : (T, N) prices the results were trained on.
    scope : the universe's scope (:func:`universe_scope`).
    thresholds : :class:`GateThresholds` or a params mapping (defaults of seed 003).

    Returns
    -------
    DataFrame, one row per model: ``name, model_id, label, status, gate`` (``passed``, ``failed`` or
    ``registered before``), ``reasons`` (failed criteria with their values), ``oos_sharpe``.
    """
    th = thresholds if isinstance(thresholds, GateThresholds) else GateThresholds.from_dict(thresholds)
    fresh, rows = [], {}
    for name, res in results.items():
        mid = register_walk_forward(res, close, scope, model_name=name, if_exists=if_exists, extra=extra, model_dir=model_dir, cost_bps=th.cost_bps, db=db)
        m = get_model(mid, db=db)
        rows[name] = {"name": name, "model_id": mid, "label": m["label"], "status": m["status"], "gate": "registered before", "reasons": "",
                      "oos_sharpe": m["oos_sharpe"]}
        if m["status"] == "candidate" and gate_results(mid, db=db).empty:  # new, or registered by a run that stopped before its gate
            fresh.append(name)
    order = sorted(fresh, key=lambda n: (rows[n]["oos_sharpe"] is not None, rows[n]["oos_sharpe"] or 0.0))
    for name in order:
        d = apply_gate(rows[name]["model_id"], th, db=db)
        rows[name].update(gate="passed" if d.passed else "failed", reasons="; ".join(d.reasons))
    for r in rows.values():
        r["status"] = get_model(r["model_id"], db=db)["status"]
    return pd.DataFrame(list(rows.values()), columns=["name", "model_id", "label", "status", "gate", "reasons", "oos_sharpe"])


# ------------------------------------------------------------------------------------------------
# lifecycle
# ------------------------------------------------------------------------------------------------


def _model_row(conn, model_id: int) -> dict:
    row = conn.execute(sa.select(S.models).where(S.models.c.id == int(model_id))).mappings().first()
    if row is None:
        raise UnknownModelError(f"no model with id {model_id} in the registry")
    return dict(row)


def apply_gate(model_id: int, thresholds: GateThresholds | dict | None = None, *, db=None) -> GateDecision:
    """Check a candidate against the promotion gate and record the decision.

    Pass: the candidate becomes ``active`` and the scope's previous active model ``retired``, in one
    transaction with the evaluation, its per-criterion rows and the history rows. Fail: the model
    stays ``candidate``; the evaluation records every criterion with its value and threshold, a
    ``gate_failed`` history row lists the failures, and a warning is logged (the notification).

    Criteria (see :class:`GateThresholds`): ``folds``, ``leakage_rows``, ``direction_accuracy``,
    ``mape`` (forecasters only), ``sharpe_minus_benchmark`` (only with ``require_beat_benchmark``).

    Raises
    ------
    UnknownModelError
        No such model.
    InvalidTransitionError
        The model is not a candidate.
    ValueError
        Bad thresholds.
    """
    th = thresholds if isinstance(thresholds, GateThresholds) else GateThresholds.from_dict(thresholds)
    engine = get_engine(db)
    with write_tx(engine, "registry") as conn:
        m = _model_row(conn, model_id)
        if m["status"] != "candidate":
            raise InvalidTransitionError(f"model {m['label']} (id {model_id}) is {m['status']}; only a candidate can go through the gate")
        folds = pd.read_sql(sa.select(S.model_folds).where(S.model_folds.c.model_id == m["id"]), conn)
        checks = _evaluate(th, m, folds)
        passed = all(c["passed"] for c in checks)
        mt = S.models
        prev = conn.execute(sa.select(mt.c.id, mt.c.label).where(mt.c.scope == m["scope"], mt.c.status == "active")).first()
        ev = conn.execute(S.gate_evaluations.insert().values(
            model_id=m["id"], evaluated_at=utc_now(), passed=passed, thresholds=th.to_dict(), previous_active_id=prev.id if prev else None,
        ))
        ev_id = int(ev.inserted_primary_key[0])
        conn.execute(S.gate_checks.insert(), [{"evaluation_id": ev_id, **c} for c in checks])
        retired_id = None
        if passed:
            if prev is not None:
                conn.execute(mt.update().where(mt.c.id == prev.id).values(status="retired"))
                _history(conn, prev.id, "retired", "active", "retired", f"replaced by {m['label']} (id {m['id']})")
                retired_id = int(prev.id)
            conn.execute(mt.update().where(mt.c.id == m["id"]).values(status="active"))
            _history(conn, m["id"], "promoted", "candidate", "active", "gate passed" + (f"; retired {prev.label}" if prev else ""))
        decision = GateDecision(int(m["id"]), m["label"], passed, "active" if passed else "candidate", pd.DataFrame(checks), ev_id, retired_id)
        if not passed:
            _history(conn, m["id"], "gate_failed", "candidate", "candidate", "; ".join(decision.reasons))
        fault_point("registry.gate_before_commit")
    if passed:
        log.info("gate passed: %s is active%s", m["label"], f" (retired id {retired_id})" if retired_id else "")
    else:
        log.warning("gate failed: %s stays candidate: %s", m["label"], "; ".join(decision.reasons))
    return decision


def retire(model_id: int, reason: str = "", *, db=None) -> None:
    """Retire an active model or reject a candidate (status ``retired``), with a history row.

    Raises
    ------
    UnknownModelError
        No such model.
    InvalidTransitionError
        The model is retired already.
    """
    engine = get_engine(db)
    with write_tx(engine, "registry") as conn:
        m = _model_row(conn, model_id)
        if m["status"] == "retired":
            raise InvalidTransitionError(f"model {m['label']} (id {model_id}) is retired already")
        conn.execute(S.models.update().where(S.models.c.id == m["id"]).values(status="retired"))
        _history(conn, m["id"], "retired", m["status"], "retired", reason or "retired by hand")


# ------------------------------------------------------------------------------------------------
# queries
# ------------------------------------------------------------------------------------------------


def get_model(model_id: int, *, db=None) -> dict:
    """The model's registry row as a dict. Raises :class:`UnknownModelError`."""
    with read_tx(get_engine(db)) as conn:
        return _model_row(conn, model_id)


def active_model(scope: str, *, db=None) -> dict | None:
    """The active model of ``scope`` (its registry row), or None."""
    with read_tx(get_engine(db)) as conn:
        row = conn.execute(sa.select(S.models).where(S.models.c.scope == scope, S.models.c.status == "active")).mappings().first()
    return dict(row) if row else None


def _frame(stmt, db) -> pd.DataFrame:
    with read_tx(get_engine(db)) as conn:
        return pd.read_sql(stmt, conn)


def fold_table(model_id: int | None = None, *, db=None) -> pd.DataFrame:
    """Per-fold metrics as registered, with the model's label: one row per (model, fold)."""
    f, m = S.model_folds, S.models
    stmt = sa.select(m.c.label, f).join(m, m.c.id == f.c.model_id).order_by(f.c.model_id, f.c.fold)
    if model_id is not None:
        stmt = stmt.where(f.c.model_id == int(model_id))
    return _frame(stmt, db)


def gate_results(model_id: int | None = None, *, db=None) -> pd.DataFrame:
    """Every gate evaluation's criteria: one row per (evaluation, criterion) with the model's label,
    ``evaluated_at``, overall ``gate_passed`` and the criterion's ``value, op, threshold, passed, detail``."""
    e, c, m = S.gate_evaluations, S.gate_checks, S.models
    stmt = (
        sa.select(e.c.id.label("evaluation_id"), e.c.model_id, m.c.label, e.c.evaluated_at, e.c.passed.label("gate_passed"),
                  c.c.criterion, c.c.value, c.c.op, c.c.threshold, c.c.passed, c.c.detail)
        .join(c, c.c.evaluation_id == e.c.id).join(m, m.c.id == e.c.model_id).order_by(e.c.id, c.c.criterion)
    )
    if model_id is not None:
        stmt = stmt.where(e.c.model_id == int(model_id))
    return _frame(stmt, db)


def history(model_id: int | None = None, *, db=None) -> pd.DataFrame:
    """Every lifecycle event, oldest first: ``id, model_id, label, event, from_status, to_status, at, reason``."""
    h, m = S.model_history, S.models
    stmt = sa.select(h.c.id, h.c.model_id, m.c.label, h.c.event, h.c.from_status, h.c.to_status, h.c.at, h.c.reason).join(m, m.c.id == h.c.model_id).order_by(h.c.id)
    if model_id is not None:
        stmt = stmt.where(h.c.model_id == int(model_id))
    return _frame(stmt, db)


def list_models(*, scope: str | None = None, status: str | None = None, db=None) -> pd.DataFrame:
    """One row per registered model with its pooled fold metrics and last gate decision:
    ``id, label, name, scope, version, trained_on, status, forecaster, folds, n_obs,
    direction_accuracy, mape, leakage_rows, oos_sharpe, benchmark_sharpe`` (net of ``cost_bps``),
    ``oos_sharpe_gross`` (before costs), ``cost_bps`` (None for models registered without them),
    ``gate`` (``passed``, ``failed`` or None if never gated), ``gate_failures`` (failed criteria),
    ``registered_at``, ``checkpoint_path``.

    Raises
    ------
    ValueError
        Unknown status.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    m = S.models
    stmt = sa.select(m).order_by(m.c.id)
    if scope is not None:
        stmt = stmt.where(m.c.scope == scope)
    if status is not None:
        stmt = stmt.where(m.c.status == status)
    models = _frame(stmt, db)
    folds = fold_table(db=db)
    gates = gate_results(db=db)
    rows = []
    for r in models.to_dict("records"):
        f = folds[folds["model_id"] == r["id"]]
        g = gates[gates["model_id"] == r["id"]]
        last = g[g["evaluation_id"] == g["evaluation_id"].max()] if len(g) else g
        rows.append({
            "id": r["id"], "label": r["label"], "name": r["name"], "scope": r["scope"], "version": r["version"], "trained_on": r["trained_on"],
            "status": r["status"], "forecaster": bool(r["forecaster"]), "folds": len(f), "n_obs": int(f["n_obs"].sum()) if len(f) else 0,
            "direction_accuracy": _weighted(f["direction_accuracy"], f["n_obs"]) if len(f) else None,
            "mape": _weighted(f["mape"], f["n_obs"]) if len(f) else None,
            "leakage_rows": int(f["leakage_rows"].sum()) if len(f) else 0,
            "oos_sharpe": r["oos_sharpe"], "benchmark_sharpe": r["benchmark_sharpe"],
            "oos_sharpe_gross": (r["extra"] or {}).get("oos_sharpe_gross"), "cost_bps": (r["extra"] or {}).get("cost_bps"),
            "gate": None if not len(last) else ("passed" if bool(last["gate_passed"].iloc[0]) else "failed"),
            "gate_failures": ", ".join(last.loc[~last["passed"].astype(bool), "criterion"]) if len(last) else "",
            "registered_at": r["registered_at"], "checkpoint_path": r["checkpoint_path"],
        })
    cols = ["id", "label", "name", "scope", "version", "trained_on", "status", "forecaster", "folds", "n_obs", "direction_accuracy", "mape",
            "leakage_rows", "oos_sharpe", "benchmark_sharpe", "oos_sharpe_gross", "cost_bps", "gate", "gate_failures", "registered_at", "checkpoint_path"]
    return pd.DataFrame(rows, columns=cols)


def load_model(model_id: int, *, db=None):
    """Rebuild a registered model from its versioned checkpoint after checking the file's sha256
    against the registry; returns ``(model, payload)`` as :func:`kit.models.load_checkpoint`: a
    single model, a :class:`kit.models.ForecasterBundle` of per-symbol forecasters, a
    :class:`kit.models.PositionEnsemble`, or a foundation model's module (fine-tuned weights from
    the file; zero-shot ones from the weights folder it names, their sha256 checked; wrap it with
    :func:`kit.models.foundation.adapter_for`). The file is read with ``weights_only=True``.

    Raises
    ------
    CheckpointMismatchError
        The file is missing or was changed since registration.
    kit.models.CheckpointError
        The file is not a kit checkpoint or holds more than tensors and plain values.
    """
    m = get_model(model_id, db=db)
    path = Path(m["checkpoint_path"])
    if not path.is_file():
        raise CheckpointMismatchError(f"checkpoint of {m['label']} is missing: {str(path)!r}")
    sha = _sha256_file(path)
    if sha != m["checkpoint_sha256"]:
        raise CheckpointMismatchError(f"checkpoint of {m['label']} changed since registration: sha256 {sha[:12]} != recorded {m['checkpoint_sha256'][:12]}")
    return load_checkpoint(path)

