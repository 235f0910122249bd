"""Runs: execute a profile's notebooks with papermill into a versioned run folder, render each page,
and update the site of runs.

A run gets ``run_id = <UTC yyyymmddTHHMMSS>-<git sha7>`` and its own folder
``reports/runs/<run_id>/`` holding the executed notebooks, their HTML, ``params.yaml``,
``run.json`` (git commit, data sha256, versions, renderer, status, timings), ``metrics.json``
(headline figures written by the notebooks) and ``artifacts/``. Runs are never overwritten.
``reports/index.html`` lists every run, newest first, with its headline figures.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..base.atomic import atomic_write_text
from ..base.locks import LockHeldError, file_lock
from ..data import data_sha256
from ..data.load import _resolve
from ..paths import NOTEBOOK_DIR, REPO_ROOT, REPORTS_DIR
from .profiles import ProfileError, check_profile, load_profile, notebook_parameter_names, notebook_parameters
from .render import render_notebook, renderer_name
from .site import build_index

__all__ = ["RunLockedError", "git_commit", "new_run_id", "create_run_dir", "run_lock", "run_profile"]



class RunLockedError(LockHeldError):
    """Another run holds the reports lock (two runs never overlap)."""



def git_commit(root: Path = REPO_ROOT) -> tuple[str, bool]:
    """(commit sha, dirty) of the working tree; outside a git checkout (e.g. a directory shipped by
    ``ray job submit --working-dir``) ``($KIT_GIT_COMMIT, False)`` when that is set, else
    ``("nogit", False)``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("KIT_GIT_COMMIT", "").strip() or "nogit", False



def new_run_id(now: dt.datetime | None = None, sha: str | None = None) -> str:
    """``<UTC yyyymmddTHHMMSS>-<git sha7>``."""
    now = now or dt.datetime.now(dt.UTC)
    sha = sha if sha is not None else git_commit()[0]
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{sha[:7]}"



def create_run_dir(reports_dir=REPORTS_DIR, run_id: str | None = None) -> Path:
    """Create ``reports_dir/runs/<run_id>`` exclusively; if that name exists (two runs in the same
    second), a suffix ``-2``, ``-3``... is added. An existing run is never reused."""
    base = Path(reports_dir) / "runs"
    base.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    candidate, k = base / run_id, 1
    while True:
        try:
            candidate.mkdir()
            (candidate / "artifacts").mkdir()
            return candidate
        except FileExistsError:
            k += 1
            candidate = base / f"{run_id}-{k}"



def run_lock(reports_dir=REPORTS_DIR):
    """Hold an exclusive, non-blocking lock on ``reports_dir/.lock`` for the duration of a run
    (:func:`kit.base.file_lock`; released by the kernel however the process ends).

    Raises
    ------
    RunLockedError
        The lock is held by another process (e.g. yesterday's cron run is still going).
    """
    return file_lock(Path(reports_dir) / ".lock", "another run", RunLockedError)


def run_profile(
    profile_name, reports_dir=REPORTS_DIR, renderer: str = "auto", notebooks=None, kernel_name: str | None = None, reuse_artifacts=None,
    exec_options: dict | None = None,
) -> Path:
    """Execute a profile's notebooks into a new run folder, render each, and update the index.

    Steps: take the reports lock; create ``runs/<run_id>/``; write ``params.yaml`` and ``run.json``
    (git commit, dirty flag, data sha256, versions, renderer); for each notebook run papermill with
    :func:`notebook_parameters`, save the executed ``.ipynb`` and render its HTML; record timings and
    the final status in ``run.json``; rebuild ``index.html``. A failing notebook is still rendered
    (its HTML shows the error), the run is marked ``failed``, and the error is re-raised.

    ``reuse_artifacts`` (an earlier run's folder, or its run id under ``reports_dir/runs``) copies
    that run's ``artifacts/`` and ``metrics.json`` into the new run first, so later notebooks (e.g.
    ``--notebooks 30_backtest``) can be re-run on its trained positions without retraining; the
    source run id and its git commit are recorded in ``run.json`` as ``reused_artifacts_from``.

    ``exec_options`` (``backend``, ``address``, ``workers``, ``threads``: where the training tasks
    run, e.g. from ``python -m kit run --backend ray``) override the profile's values in every
    notebook that has those parameters; the settings in force are recorded in ``run.json`` as
    ``exec`` (the thread count resolved: results depend on it), and ``metrics.json``'s ``exec``
    section holds what ran (tasks per node).

    Returns
    -------
    Path of the run folder.

    Raises
    ------
    ProfileError
        The profile is missing or malformed, or names a key its notebooks would not read (checked
        before anything runs).
    RunLockedError, papermill.PapermillExecutionError
    """
    profile = load_profile(profile_name)
    names = notebooks or profile["notebooks"]
    check_profile(profile, names)
    import papermill as pm

    reports_dir = Path(reports_dir)
    source = None
    if reuse_artifacts:
        source = Path(reuse_artifacts)
        if not source.is_dir():
            source = reports_dir / "runs" / str(reuse_artifacts)
        if not (source / "run.json").exists():
            raise ProfileError(f"reuse_artifacts={reuse_artifacts!r}: no run folder with a run.json at {source}")
    with run_lock(reports_dir):
        sha, dirty = git_commit()
        run_dir = create_run_dir(reports_dir, new_run_id(sha=sha))
        data_source = profile["shared"].get("data_path") or None
        which = renderer_name(renderer)
        info = {
            "run_id": run_dir.name,
            "profile": profile["name"],
            "status": "running",
            "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": sha,
            "git_dirty": dirty,
            "data_path": str(_resolve(data_source)),
            "data_sha256": data_sha256(data_source),
            "renderer": which,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "argv": sys.argv,
            "notebooks": {},
        }
        for mod in ("torch", "numpy", "pandas", "vectorbt", "empyrical", "numba", "papermill"):
            try:
                info.setdefault("versions", {})[mod] = __import__(mod).__version__
            except Exception:  # pragma: no cover - version lookup is best effort
                info.setdefault("versions", {})[mod] = "unavailable"
        if source is not None:
            src_info = json.loads((source / "run.json").read_text())
            shutil.copytree(source / "artifacts", run_dir / "artifacts", dirs_exist_ok=True)
            if (source / "metrics.json").exists():
                shutil.copy2(source / "metrics.json", run_dir / "metrics.json")
            info["reused_artifacts_from"] = {"run_id": source.name, "git_commit": src_info.get("git_commit"), "profile": src_info.get("profile")}
        exec_opts = {k: v for k, v in (exec_options or {}).items() if v is not None}
        info["exec"] = _exec_record(profile, names, exec_opts)
        atomic_write_text(run_dir / "params.yaml", yaml.safe_dump({k: v for k, v in profile.items() if k != "path"}, sort_keys=False))
        atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2))
        error = None
        t_run = time.perf_counter()
        for name in names:
            src = NOTEBOOK_DIR / f"{name}.ipynb"
            dst = run_dir / f"{name}.ipynb"
            t0 = time.perf_counter()
            status = "ok"
            try:
                pm.execute_notebook(
                    str(src),
                    str(dst),
                    parameters=_with_exec(notebook_parameters(profile, name, run_dir, accepted=notebook_parameter_names(name)),
                                          exec_opts, notebook_parameter_names(name)),
                    cwd=str(run_dir),
                    kernel_name=kernel_name,
                    progress_bar=False,
                    log_output=False,
                )
            except Exception as exc:  # noqa: BLE001 - recorded, rendered, re-raised below
                status, error = "failed", exc
            info["notebooks"][name] = {"status": status, "seconds": round(time.perf_counter() - t0, 1)}
            if dst.exists():
                info["notebooks"][name]["html"] = render_notebook(dst, which, info).name
            atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2))
            if error is not None:
                break
        info["status"] = "failed" if error else "ok"
        info["seconds"] = round(time.perf_counter() - t_run, 1)
        info["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2))
        build_index(reports_dir)
    if error is not None:
        raise error
    return run_dir



_EXEC_KEYS = ("backend", "address", "workers", "threads")


def _with_exec(params: dict, exec_opts: dict, accepted) -> dict:
    """A notebook's parameters with the run's execution options, for the notebooks that take them."""
    return {**params, **{k: v for k, v in exec_opts.items() if k in accepted}}


def _exec_record(profile: dict, names, exec_opts: dict) -> dict:
    """The execution settings of a run, for ``run.json``: the first notebook section that sets them,
    overridden by ``exec_opts``; threads resolved (0: ``$KIT_TASK_THREADS`` or 1)."""
    from ..training.tasks import default_threads

    rec = {"backend": "serial", "address": "", "workers": 0, "threads": 0}
    for nb in names:
        section = profile.get(nb) or {}
        if any(k in section for k in _EXEC_KEYS):
            rec.update({k: section[k] for k in _EXEC_KEYS if k in section})
            break
    rec.update(exec_opts)
    rec["threads"] = int(rec["threads"] or default_threads())
    return rec
