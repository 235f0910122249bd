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
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..base.atomic import atomic_write_text
from ..base.jsonable import jsonable
from ..base.locks import LockHeldError, file_lock
from ..data import data_sha256
from ..data.load import _resolve
from ..paths import NOTEBOOK_DIR, REPO_ROOT, REPORTS_DIR, ensure_under
from .profiles import (
    ProfileError,
    check_notebook_names,
    check_profile,
    check_values,
    load_profile,
    notebook_parameter_names,
    notebook_parameters,
)
from .render import execute_options, render_notebook, renderer_label, renderer_name, stage_line
from .site import build_index
from .summary import summary_page

__all__ = ["RunLockedError", "StageFailed", "NotWritableError", "RUN_STATES", "git_commit", "new_run_id", "create_run_dir", "run_lock",
           "run_profile", "mark_interrupted", "check_writable"]



class RunLockedError(LockHeldError):
    """Another run holds the reports lock (two runs never overlap)."""


class StageFailed(RuntimeError):
    """A notebook of a run failed. ``run_dir`` is the run's folder (its ``error.log`` holds the
    traceback), ``stage`` the notebook, ``ename``/``evalue`` the error raised inside it."""

    def __init__(self, run_dir: Path, stage: str, ename: str, evalue: str):
        self.run_dir, self.stage, self.ename, self.evalue = Path(run_dir), stage, ename, evalue
        super().__init__(f"{stage}: {ename}: {evalue}")


class NotWritableError(OSError):
    """The reports folder or the database cannot be written to (found before anything runs)."""


RUN_STATES = ("running", "ok", "failed", "interrupted")
"""A run's ``status`` in ``run.json``: ``running`` while its process works; ``ok``; ``failed`` (the
first error kept in ``error``, its traceback in ``error.log``); ``interrupted`` (the process died or
was stopped: found by the next run that takes the lock, or by ``kit index``)."""



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


def _write_json(path: Path, info: dict) -> None:
    atomic_write_text(path, json.dumps(jsonable(info), indent=2))


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True


def mark_interrupted(reports_dir=REPORTS_DIR, lock_held: bool = True) -> list[str]:
    """Mark runs left ``running`` by a process that died as ``interrupted``; returns their ids.

    With the reports lock held (``lock_held``) no other run can be going, so every ``running`` run
    is interrupted. Without it, only runs whose recorded process is gone from this host are.
    """
    out = []
    host = platform.node()
    for run_json in sorted(Path(reports_dir).glob("runs/*/run.json")):
        try:
            info = json.loads(run_json.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("status") != "running":
            continue
        if not lock_held and (info.get("host") != host or _pid_alive(info.get("pid"))):
            continue
        info["status"] = "interrupted"
        info["interrupted_detected_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            _write_json(run_json, info)
            out.append(run_json.parent.name)
        except OSError:
            pass
    return out


def check_writable(reports_dir, db_urls=(), min_free_mb: int = 200) -> None:
    """Before anything runs: the reports folder can be written to and has room, and each database
    in ``db_urls`` accepts a write (a probe table written and rolled back), with its ledger key and
    anchor files' folder writable.

    Raises
    ------
    NotWritableError
        Naming what cannot be written and why.
    """
    import tempfile

    reports_dir = Path(reports_dir)
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=reports_dir, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise NotWritableError(f"reports folder {str(reports_dir)!r} is not writable ({exc.strerror or exc})") from None
    free = shutil.disk_usage(reports_dir).free / 2**20
    if free < min_free_mb:
        raise NotWritableError(f"reports folder {str(reports_dir)!r} has only {free:.0f} MB free (a run needs at least {min_free_mb} MB)")
    from sqlalchemy import text

    from ..store import ledger
    from ..store.engine import get_engine, write_tx

    for url in dict.fromkeys(db_urls):
        try:
            engine = get_engine(url or None)
            with write_tx(engine, "schema") as conn:
                conn.execute(text("CREATE TABLE IF NOT EXISTS kit_write_probe (x INTEGER)"))
                conn.execute(text("INSERT INTO kit_write_probe VALUES (1)"))
                raise _Rollback
        except _Rollback:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure to write is this error
            where = url or "the default database"
            raise NotWritableError(f"database {where} does not accept writes ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        for what, path in (("ledger anchor file", ledger.anchor_path(engine)), ("ledger key file", ledger.key_path(engine))):
            folder = path.parent
            if (path.exists() and not os.access(path, os.W_OK) and what == "ledger anchor file") or (
                not path.exists() and folder.exists() and not os.access(folder, os.W_OK)
            ):
                raise NotWritableError(f"{what} {str(path)!r} is not writable")


class _Rollback(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


def run_profile(
    profile_name=None, reports_dir=REPORTS_DIR, renderer: str = "auto", notebooks=None, kernel_name: str | None = None, reuse_artifacts=None,
    *, profile_file=None, exec_options: dict | None = None,
) -> Path:
    """Execute a profile's notebooks into a new run folder, render each, and update the index.

    Before anything runs (and before the lock): the profile is read (a plain name in ``params/``,
    or ``profile_file``), its keys and values are checked against the notebooks' parameters
    (:func:`kit.reports.profiles.check_profile`, :func:`~kit.reports.profiles.check_values`), and the
    reports folder and the notebooks' databases are checked writable (:func:`check_writable`). Then:
    take the reports lock and mark runs a dead process left ``running`` as ``interrupted``; create
    ``runs/<run_id>/``; write ``params.yaml`` and ``run.json`` (git commit, dirty flag, data sha256,
    versions, renderer, pid, host); run each notebook with papermill, save the executed ``.ipynb``
    and render its HTML; record timings and the final status; write the review summary
    (``summary.html``) and rebuild the site (``index.html``). One line per stage on stdout (elapsed
    time, render time) and a bar over each notebook's cells on stderr.

    A failing notebook stops the run: it is still rendered, the run is marked ``failed`` with the
    first error (type, message, stage) in ``run.json`` and its traceback in ``error.log``; a later
    error (rendering, writing) never replaces it. An interrupt (Ctrl-C) marks the run
    ``interrupted``.

    ``reuse_artifacts`` (an earlier run's folder, or its run id under ``reports_dir/runs``) copies
    that run's ``artifacts/`` and ``metrics.json`` into the new run first, so later notebooks can be
    re-run on its trained positions; the source run is recorded in ``run.json``.

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
        The profile is missing, malformed, or gives a key or value its notebooks would not accept.
    NotWritableError
        The reports folder or a database cannot be written to.
    RunLockedError
        Another run holds the lock.
    StageFailed
        A notebook failed (the run is recorded ``failed``).
    """
    profile = load_profile(profile_name, path=profile_file)
    names = check_notebook_names(notebooks or profile["notebooks"])
    check_profile(profile, names)
    check_values(profile, names)
    reports_dir = Path(reports_dir)
    source = None
    if reuse_artifacts:
        source = Path(reuse_artifacts)
        if not source.is_dir():
            if not RUN_ID.fullmatch(str(reuse_artifacts)):
                raise ProfileError(f"reuse_artifacts={reuse_artifacts!r} is neither a run folder nor a run id like 20261129T120000-abcdef1")
            source = reports_dir / "runs" / str(reuse_artifacts)
        if not (source / "run.json").exists():
            raise ProfileError(f"reuse_artifacts={reuse_artifacts!r}: no run folder with a run.json at {source}")
    db_urls = [notebook_parameters(profile, nb, "").get("db_url", "") for nb in names if nb in _DB_NOTEBOOKS]
    check_writable(reports_dir, db_urls)
    import papermill as pm

    with run_lock(reports_dir):
        mark_interrupted(reports_dir, lock_held=True)
        sha, dirty = git_commit()
        run_dir = create_run_dir(reports_dir, new_run_id(sha=sha))
        ensure_under(reports_dir, run_dir)
        data_source = profile["shared"].get("data_path") or None
        which = renderer_name(renderer)
        info = {
            "run_id": run_dir.name,
            "profile": profile["name"],
            "status": "running",
            "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "host": platform.node(),
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
        _write_json(run_dir / "run.json", info)
        failure = None
        t_run = time.perf_counter()
        print(f"run {run_dir.name}: profile {profile['name']}, {len(names)} stage(s), pages by {renderer_label(which)}", flush=True)
        try:
            for i, name in enumerate(names, 1):
                failure = _run_stage(pm, profile, name, run_dir, info, which, kernel_name, (i, len(names), t_run), exec_opts)
                if failure is not None:
                    break
        except BaseException as exc:  # an interrupt (Ctrl-C, SIGTERM as KeyboardInterrupt) or a crash of the loop itself
            info["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            info.setdefault("error", {"stage": None, "type": type(exc).__name__, "message": _one_line(exc)})
            _finish(run_dir, info, t_run, reports_dir, exc)
            raise
        info["status"] = "failed" if failure is not None else "ok"
        _finish(run_dir, info, t_run, reports_dir, None)
    if failure is not None:
        raise failure
    return run_dir


RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{4,40}(-[0-9]+)?")
_DB_NOTEBOOKS = ("20_train", "40_paper_trade", "50_audit")


def _run_stage(pm, profile, name, run_dir, info, which, kernel_name, position, exec_opts):
    """Execute and render one notebook; returns a :class:`StageFailed` when it failed (recorded)."""
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    dst = ensure_under(run_dir, run_dir / f"{name}.ipynb")
    t0 = time.perf_counter()
    entry = info["notebooks"][name] = {"status": "running"}
    _write_json(run_dir / "run.json", info)
    failure = None
    try:
        pm.execute_notebook(
            str(src), str(dst),
            parameters=_with_exec(notebook_parameters(profile, name, run_dir, accepted=notebook_parameter_names(name)), exec_opts,
                                  notebook_parameter_names(name)),
            cwd=str(run_dir), kernel_name=kernel_name, **execute_options(f"[{position[0]}/{position[1]}] {name}"),
        )
        entry["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the first error is kept, its traceback logged
        ename = getattr(exc, "ename", None) or type(exc).__name__
        evalue = getattr(exc, "evalue", None) or _one_line(exc)
        entry["status"] = "failed"
        info["error"] = {"stage": name, "type": ename, "message": str(evalue).splitlines()[0][:500] if str(evalue) else ename}
        failure = StageFailed(run_dir, name, info["error"]["type"], info["error"]["message"])
        _log_error(run_dir, exc)
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    if dst.exists():
        t_page = time.perf_counter()
        try:
            entry["html"] = render_notebook(dst, which, info).name
            entry["render_seconds"] = round(time.perf_counter() - t_page, 1)
        except Exception as exc:  # noqa: BLE001 - a rendering error is recorded beside, never instead of, the stage's result
            entry["render_error"] = f"{type(exc).__name__}: {_one_line(exc)}"
            _log_error(run_dir, exc)
    stage_line(position[0], position[1], name, entry, position[2], which)
    try:
        _write_json(run_dir / "run.json", info)
    except OSError:
        pass  # the final write retries; the first error stays in `info`
    return failure


def _log_error(run_dir: Path, exc: BaseException) -> None:
    import traceback

    try:
        with open(Path(run_dir) / "error.log", "a") as fh:
            fh.write(f"--- {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}\n")
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        pass


def _finish(run_dir, info, t_run, reports_dir, exc) -> None:
    info["seconds"] = round(time.perf_counter() - t_run, 1)
    info["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if exc is not None:
        _log_error(run_dir, exc)
    try:
        _write_json(run_dir / "run.json", info)
    except OSError as write_error:
        print(f"kit run: could not record the run's final state in {run_dir}/run.json ({write_error})", file=sys.stderr)
    try:
        summary_page(run_dir, info.get("renderer", "nbconvert"), info)
    except Exception as summary_error:  # noqa: BLE001 - the run's own result matters more than its summary
        print(f"kit run: could not write the run's summary ({type(summary_error).__name__}: {summary_error})", file=sys.stderr)
    try:
        build_index(reports_dir, renderer=info.get("renderer", "auto"))
    except Exception as index_error:  # noqa: BLE001 - the run's own result matters more than the index
        print(f"kit run: could not rebuild the index ({type(index_error).__name__}: {index_error})", file=sys.stderr)
    from ..live.monitoring import publish_profile_run

    publish_profile_run(run_dir, info)  # Prometheus metrics of the run when a Pushgateway is configured; never raises


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
