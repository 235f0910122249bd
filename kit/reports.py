"""Runs and reports: execute a profile's notebooks with papermill, render them to HTML, index runs.

A run gets ``run_id = <UTC yyyymmddTHHMMSS>-<git sha7>`` and its own folder
``reports/runs/<run_id>/`` holding the executed notebooks, their HTML, ``params.yaml``,
``run.json`` (git commit, data sha256, versions, renderer, status, timings), ``metrics.json``
(headline figures written by the notebooks) and ``artifacts/``. Runs are never overwritten.
``reports/index.html`` lists every run, newest first, with its headline figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ._atomic import atomic_write_text
from .data import REPO_ROOT, _resolve, data_sha256

__all__ = [
    "RunLockedError",
    "ProfileError",
    "load_profile",
    "notebook_parameters",
    "git_commit",
    "new_run_id",
    "create_run_dir",
    "atomic_write_text",
    "save_metrics",
    "load_metrics",
    "render_notebook",
    "run_profile",
    "build_index",
    "run_lock",
]

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
REPORTS_DIR = REPO_ROOT / "reports"


class RunLockedError(RuntimeError):
    """Another run holds the reports lock (two runs never overlap)."""


class ProfileError(ValueError):
    """A profile file is missing or malformed (the message names the file and key)."""


def load_profile(name_or_path) -> dict:
    """Read ``params/<name>.yaml`` (or a path).

    Expected keys: ``notebooks`` (list of notebook stems, run in order), ``shared`` (parameters
    given to every notebook) and one optional section per notebook stem (overrides for it).

    Raises
    ------
    ProfileError
        Missing file, YAML error, or a missing/ill-typed key.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PARAMS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ProfileError(f"profile {str(name_or_path)!r} not found (known: {known})")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {exc}") from exc
    notebooks = profile.get("notebooks")
    if not isinstance(notebooks, list) or not notebooks:
        raise ProfileError(f"{path}: key 'notebooks' must be a non-empty list, got {notebooks!r}")
    for nb in notebooks:
        if not (NOTEBOOK_DIR / f"{nb}.ipynb").exists():
            raise ProfileError(f"{path}: notebooks entry {nb!r} has no notebooks/{nb}.ipynb")
    if not isinstance(profile.get("shared", {}), dict):
        raise ProfileError(f"{path}: key 'shared' must be a mapping")
    profile.setdefault("shared", {})
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile


def notebook_parameters(profile: dict, notebook: str, run_dir) -> dict:
    """Parameters for one notebook: ``shared`` overlaid by the notebook's own section, plus
    ``run_dir`` and ``profile``."""
    params = dict(profile.get("shared", {}))
    params.update(profile.get(notebook, {}) or {})
    params["run_dir"] = str(run_dir)
    params["profile"] = profile["name"]
    return params


def git_commit(root: Path = REPO_ROOT) -> tuple[str, bool]:
    """(commit sha, dirty) of the working tree; ``("nogit", False)`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return "nogit", False


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


def load_metrics(run_dir) -> dict:
    """Contents of ``run_dir/metrics.json`` ({} when absent)."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _jsonable(obj):
    import numpy as np
    import pandas as pd

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer | np.floating):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, pd.Timestamp | dt.date):
        return obj.isoformat()
    return obj


def save_metrics(run_dir, section: str, values: dict) -> Path:
    """Merge ``{section: values}`` into ``run_dir/metrics.json`` atomically. Non-finite floats are
    stored as null. Returns the file's path."""
    path = Path(run_dir) / "metrics.json"
    metrics = load_metrics(run_dir)
    metrics[section] = _jsonable(values)
    return atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True))


@contextlib.contextmanager
def run_lock(reports_dir=REPORTS_DIR):
    """Hold an exclusive, non-blocking lock on ``reports_dir/.lock`` for the duration of a run.

    Raises
    ------
    RunLockedError
        The lock is held by another process (e.g. yesterday's cron run is still going).
    """
    import fcntl

    Path(reports_dir).mkdir(parents=True, exist_ok=True)
    fh = open(Path(reports_dir) / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunLockedError(f"another run holds {Path(reports_dir) / '.lock'}; not starting") from exc
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def _renderer(choice: str = "auto") -> str:
    if choice not in ("auto", "quarto", "nbconvert"):
        raise ValueError(f"renderer must be 'auto', 'quarto' or 'nbconvert', got {choice!r}")
    if choice == "auto":
        return "quarto" if shutil.which("quarto") else "nbconvert"
    if choice == "quarto" and not shutil.which("quarto"):
        raise RuntimeError("renderer='quarto' but the quarto binary is not on PATH")
    return choice


def _version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def render_notebook(ipynb, renderer: str = "auto", run_info: dict | None = None) -> Path:
    """Render an executed notebook to a self-contained HTML page beside it.

    ``quarto render`` (configured by ``_quarto.yml``) when ``quarto`` is on PATH, else nbconvert's
    HTML exporter with images embedded. A banner at the top of the page says which renderer made it
    (with its version) and, when ``run_info`` is given, the run id, git commit and data sha256.

    Returns
    -------
    Path of the HTML file.

    Raises
    ------
    RuntimeError
        ``renderer='quarto'`` without the binary, or the renderer failed.
    """
    import nbformat

    ipynb = Path(ipynb)
    which = _renderer(renderer)
    nb = nbformat.read(ipynb, as_version=4)
    if which == "quarto":
        label = f"Quarto {_version(['quarto', '--version'])}"
    else:
        import nbconvert

        label = f"nbconvert {nbconvert.__version__} (HTML exporter; Quarto not on PATH)"
    lines = [f"**Rendered by {label}** on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}."]
    if run_info:
        lines.append(
            f"Run `{run_info.get('run_id')}`, profile `{run_info.get('profile')}`, git commit "
            f"`{run_info.get('git_commit', '')[:12]}`{' (uncommitted changes)' if run_info.get('git_dirty') else ''}, "
            f"data sha256 `{run_info.get('data_sha256', '')[:16]}...`."
        )
    banner = nbformat.v4.new_markdown_cell("> " + "  \n> ".join(lines))
    banner.metadata["tags"] = ["kit-banner"]
    nb.cells.insert(0, banner)
    out = ipynb.with_suffix(".html")
    if which == "quarto":
        tmp = ipynb.with_name(f".{ipynb.stem}.render.ipynb")
        nbformat.write(nb, tmp)
        try:
            proc = subprocess.run(
                ["quarto", "render", str(tmp), "--to", "html", "--output", out.name, "-M", "embed-resources:true", "--no-execute"],
                cwd=ipynb.parent,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"quarto render failed for {ipynb}: {proc.stderr[-2000:]}")
        finally:
            tmp.unlink(missing_ok=True)
    else:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(embed_images=True)
        body, _ = exporter.from_notebook_node(nb)
        atomic_write_text(out, body)
    return out


def run_profile(
    profile_name, reports_dir=REPORTS_DIR, renderer: str = "auto", notebooks=None, kernel_name: str | None = None, reuse_artifacts=None
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

    Returns
    -------
    Path of the run folder.

    Raises
    ------
    ProfileError, RunLockedError, papermill.PapermillExecutionError
    """
    import papermill as pm

    profile = load_profile(profile_name)
    names = notebooks or profile["notebooks"]
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
        which = _renderer(renderer)
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
                    parameters=notebook_parameters(profile, name, run_dir),
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


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{v:.1%}" if pct else f"{v:.2f}"


def build_index(reports_dir=REPORTS_DIR) -> Path:
    """Write ``reports_dir/index.html``: every run, newest first, with status, profile, commit,
    links to its pages and the headline figures of ``metrics.json['backtest']['strategies']``."""
    reports_dir = Path(reports_dir)
    runs = sorted((p for p in (reports_dir / "runs").glob("*") if (p / "run.json").exists()), key=lambda p: p.name, reverse=True)
    rows = []
    for run in runs:
        try:
            info = json.loads((run / "run.json").read_text())
        except json.JSONDecodeError:
            continue
        metrics = load_metrics(run)
        links = " ".join(
            f'<a href="runs/{html.escape(run.name)}/{html.escape(v["html"])}">{html.escape(k)}</a>'
            for k, v in info.get("notebooks", {}).items()
            if v.get("html")
        )
        bt = metrics.get("backtest", {})
        strategies = bt.get("strategies", {})
        figures = "<br>".join(
            f"<b>{html.escape(name)}</b>: Sharpe {_fmt(s.get('sharpe_ratio'))} "
            f"[{_fmt(s.get('sharpe_ci_low'))}, {_fmt(s.get('sharpe_ci_high'))}], "
            f"return {_fmt(s.get('annual_return'), True)}, max DD {_fmt(s.get('max_drawdown'), True)}"
            for name, s in strategies.items()
        )
        scope = ""
        if bt:
            scope = f"{bt.get('n_symbols', '?')} symbols, out of sample {bt.get('start', '?')} to {bt.get('end', '?')}, net of {bt.get('cost_bps', '?')} bps"
        rows.append(
            "<tr>"
            f"<td>{html.escape(run.name)}</td><td>{html.escape(info.get('profile', ''))}</td>"
            f"<td class='{html.escape(info.get('status', ''))}'>{html.escape(info.get('status', ''))}</td>"
            f"<td>{html.escape(info.get('renderer', ''))}</td><td>{info.get('seconds', '')}</td>"
            f"<td>{links}</td><td>{html.escape(scope)}</td><td>{figures}</td>"
            "</tr>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Deep momentum research kit: runs</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:0.9em}}.failed{{color:#b00}}.ok{{color:#070}}</style>
</head><body>
<h1>Runs</h1>
<p>Newest first. Figures are out-of-sample, walk-forward, net of the stated costs; Sharpe ratios are
annualised with their 95% confidence interval. Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>
<table><tr><th>run</th><th>profile</th><th>status</th><th>renderer</th><th>seconds</th><th>pages</th><th>scope</th><th>headline (out of sample)</th></tr>
{''.join(rows)}
</table></body></html>
"""
    return atomic_write_text(reports_dir / "index.html", page)
