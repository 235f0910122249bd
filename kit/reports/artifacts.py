"""What one stage of a run hands to the next, read and written in one place.

A run folder ``reports/runs/<run_id>/`` holds ``metrics.json`` (headline figures by section, written
by the notebooks) and ``artifacts/``:

=====================================  ==========================================================
file                                   written by, content
=====================================  ==========================================================
``positions_{model}.parquet``          20_train: out-of-sample positions ``(T_test, N)`` in [-1, 1]
``forecasts_{model}_{h}d.parquet``     20_train: forecasters' out-of-sample forecast returns
``scores_{model}.parquet``             20_train: tree and ranker models' raw out-of-sample scores
``forecasts_{model}_{h}d_q10.parquet``  20_train: quantile forecasters' 10 % and 90 % quantiles
(and ``_q90``)                          (the median is ``forecasts_{model}_{h}d``)
``folds.csv``, ``training_curves.csv``  20_train: one row per fold and model; curves per epoch
``tasks.csv``                           20_train: one row per task run (seconds, CPU seconds, node)
``checkpoints/``                        20_train: one checkpoint per model and fold
``search_{model}.csv``, ``search.db``   20_train: optuna trials (when searching)
``performance.csv`` ... (tables)       30_backtest, 35_factors: :data:`TABLES`
``strategy_returns.parquet``           30_backtest: daily net returns of every strategy
``paper_days.csv``                     40_paper_trade: the replay's days
=====================================  ==========================================================

Notebooks never type these names: they call the functions below. :func:`model_outputs` gives a
later stage the positions (and forecasts) of an earlier one, training them only when the run holds
none (a notebook run by hand).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..base.atomic import atomic_path, atomic_write_text
from ..base.jsonable import jsonable

__all__ = [
    "TABLES",
    "artifacts_dir",
    "checkpoint_dir",
    "save_metrics",
    "load_metrics",
    "save_model_outputs",
    "load_positions",
    "load_forecasts",
    "load_scores",
    "load_quantile_forecasts",
    "foundation_models_of_run",
    "save_table",
    "load_table",
    "save_returns",
    "load_returns",
    "model_outputs",
    "search_storage",
    "save_search_trials",
]

TABLES = (
    "folds", "training_curves", "tasks", "performance", "cost_sweep", "value_at_risk", "stress_tests", "overlays", "paper_days",
    "factor_summary", "factor_ic_decay", "benchmark_comparison", "variants",
)
"""The CSV tables a run may hold (``artifacts/<name>.csv``)."""


def artifacts_dir(run_dir) -> Path:
    """``<run_dir>/artifacts`` (created)."""
    path = Path(run_dir) / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir(run_dir) -> Path:
    """``<run_dir>/artifacts/checkpoints`` (created)."""
    path = artifacts_dir(run_dir) / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_metrics(run_dir) -> dict:
    """Contents of ``run_dir/metrics.json`` ({} when absent)."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_metrics(run_dir, section: str, values: dict) -> Path:
    """Merge ``{section: values}`` into ``run_dir/metrics.json`` atomically. Non-finite floats are
    stored as null. Returns the file's path."""
    path = Path(run_dir) / "metrics.json"
    metrics = load_metrics(run_dir)
    metrics[section] = jsonable(values)
    return atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True))


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp)
    return path


def save_model_outputs(run_dir, name: str, positions: pd.DataFrame, forecasts: dict | None = None, scores: pd.DataFrame | None = None,
                       quantile_forecasts: dict | None = None) -> None:
    """Write a model's out-of-sample positions, (forecasters) forecasts by horizon, (tree and
    ranker models) raw scores and (quantile forecasters) the 10 % and 90 % quantiles
    ``{0.1: {h: frame}, 0.9: {h: frame}}`` (other levels are ignored: the median is ``forecasts``)."""
    d = artifacts_dir(run_dir)
    _parquet(positions, d / f"positions_{name}.parquet")
    for h, fc in (forecasts or {}).items():
        _parquet(fc, d / f"forecasts_{name}_{int(h)}d.parquet")
    if scores is not None:
        _parquet(scores, d / f"scores_{name}.parquet")
    for q, tag in ((0.1, "q10"), (0.9, "q90")):
        for h, fc in (quantile_forecasts or {}).get(q, {}).items():
            _parquet(fc, d / f"forecasts_{name}_{int(h)}d_{tag}.parquet")


def load_positions(run_dir, name: str) -> pd.DataFrame | None:
    """A model's out-of-sample positions written by :func:`save_model_outputs`, or None."""
    if not run_dir:
        return None
    path = Path(run_dir) / "artifacts" / f"positions_{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def load_forecasts(run_dir, name: str, horizons=(1, 5, 21)) -> dict | None:
    """A forecaster's out-of-sample forecasts ``{horizon: (T_test, N)}``, or None when it has none."""
    if not run_dir:
        return None
    d = Path(run_dir) / "artifacts"
    out = {int(h): pd.read_parquet(d / f"forecasts_{name}_{int(h)}d.parquet") for h in horizons if (d / f"forecasts_{name}_{int(h)}d.parquet").exists()}
    return out or None


def load_scores(run_dir, name: str) -> pd.DataFrame | None:
    """A tree or ranker model's raw out-of-sample scores written by :func:`save_model_outputs`, or None."""
    if not run_dir:
        return None
    path = Path(run_dir) / "artifacts" / f"scores_{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None
def load_quantile_forecasts(run_dir, name: str, horizons=(1, 5, 21)) -> dict | None:
    """A quantile forecaster's out-of-sample quantiles ``{0.1: {h: frame}, 0.5: {h: frame}, 0.9:
    {h: frame}}`` written by :func:`save_model_outputs` (0.5 is the median, ``forecasts``), or None
    when the run holds none for ``name``."""
    if not run_dir:
        return None
    d = Path(run_dir) / "artifacts"
    out = {}
    for q, tag in ((0.1, "_q10"), (0.5, ""), (0.9, "_q90")):
        got = {int(h): pd.read_parquet(d / f"forecasts_{name}_{int(h)}d{tag}.parquet") for h in horizons
               if (d / f"forecasts_{name}_{int(h)}d{tag}.parquet").exists()}
        if got:
            out[q] = got
    return out if 0.1 in out and 0.9 in out else None


def foundation_models_of_run(run_dir) -> dict:
    """The foundation models ``20_train`` ran in this run (its ``metrics.json`` section
    ``train.foundation.labels``): name -> report label; {} when none (or run by hand)."""
    if not run_dir:
        return {}
    return dict(load_metrics(run_dir).get("train", {}).get("foundation", {}).get("labels", {}))


def search_storage(run_dir) -> str:
    """The optuna storage URL of a run's hyperparameter searches (``artifacts/search.db``)."""
    return f"sqlite:///{artifacts_dir(run_dir) / 'search.db'}"


def save_search_trials(run_dir, model: str, trials: pd.DataFrame) -> Path:
    """Write one model's search trials (``artifacts/search_{model}.csv``)."""
    path = artifacts_dir(run_dir) / f"search_{model}.csv"
    with atomic_path(path) as tmp:
        trials.to_csv(tmp, index=False)
    return path


def _table_path(run_dir, name: str) -> Path:
    if name not in TABLES:
        raise ValueError(f"table {name!r} is not one of {TABLES}")
    return artifacts_dir(run_dir) / f"{name}.csv"


def save_table(run_dir, name: str, frame: pd.DataFrame, index: bool = False) -> Path:
    """Write one of the run's :data:`TABLES` as CSV (atomically)."""
    path = _table_path(run_dir, name)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)
    return path


def load_table(run_dir, name: str, **read_csv) -> pd.DataFrame | None:
    """One of the run's :data:`TABLES`, or None when absent."""
    path = Path(run_dir) / "artifacts" / f"{name}.csv"
    _table_path(run_dir, name)
    return pd.read_csv(path, **read_csv) if path.exists() else None


def save_returns(run_dir, returns: dict) -> Path:
    """Daily net returns of every strategy (name -> Series) as one Parquet frame."""
    return _parquet(pd.DataFrame(returns), artifacts_dir(run_dir) / "strategy_returns.parquet")


def load_returns(run_dir) -> pd.DataFrame | None:
    """Daily net returns of every strategy written by :func:`save_returns`: a ``(T, S)`` float frame
    (dates x strategy names, simple returns, NaN before a strategy's first day), or None when absent."""
    path = Path(run_dir) / "artifacts" / "strategy_returns.parquet"
    return pd.read_parquet(path) if path.exists() else None


def model_outputs(run_dir, models, frames: dict, settings, *, data_sha256: str = "", progress: bool = False, backend=None,
                  membership=None, with_scores: bool = False) -> dict:
    """Each model's out-of-sample ``(positions, forecasts)`` (``(positions, forecasts, scores)``
    with ``with_scores``): read from the run when an earlier stage wrote them, else trained here
    walk-forward with ``settings`` (a :class:`kit.training.WalkForwardSettings`) — the case of a
    notebook run on its own, e.g. by ``pytest --nbmake`` (a stack then reuses the members trained
    here before it) — restricted to ``membership`` (a ``(T, N)`` bool point-in-time mask) when
    given. The models to train run as one batch of tasks on ``backend``: a runner, ``None``
    (serial) or a tuple ``(name, address, workers, threads)`` of a notebook's execution parameters
    (empty or 0 for defaults), built with :func:`kit.exec.make_backend` only when something has to
    be trained.

    Returns
    -------
    dict model name -> ``(positions (T_test, N) DataFrame, forecasts dict or None)``; with
    ``with_scores``, ``(positions, forecasts, scores)`` where ``scores`` are a tree or ranker
    model's raw outputs and None for the other models.
    """
    out = {}
    missing = []
    for name in models:
        pos = load_positions(run_dir, name)
        if pos is not None:
            fc = load_forecasts(run_dir, name)
            out[name] = (pos, fc, load_scores(run_dir, name)) if with_scores else (pos, fc)
        else:
            missing.append(name)
    if missing:
        runner = backend
        if isinstance(backend, tuple):
            from ..exec import make_backend

            name, address, workers, threads = backend
            runner = make_backend(name or "serial", address=address or None, workers=workers or None, threads=threads or None)
        try:
            trained = settings.run_models(frames, missing, data_sha256=data_sha256, progress=progress, backend=runner, membership=membership)
        finally:
            if runner is not backend:
                runner.close()
        for name in missing:
            res = trained[name]
            out[name] = (res.positions, res.forecasts, res.scores) if with_scores else (res.positions, res.forecasts)
    return {name: out[name] for name in models}
