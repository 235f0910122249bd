"""The attack list of issue #13 as tests: bad inputs refused before anything runs, with one-line
errors and distinct exit codes; no code execution from checkpoint files; honest run states after
kills, full disks and failing stages; read-only databases and reports found before training.
(The paper step's faults are in tests/test_paper.py, the ledger's in tests/test_ledger.py.)"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from kit import reports
from kit.models import CheckpointError, load_checkpoint
from kit.reports import runs

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


class _Evil:
    """Unpickling this runs ``touch <marker>``: what a planted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> Path:
    torch.save({"config": {"model": "linear", "n_features": 8}, "state_dict": {}, "x": _Evil(marker)}, path)
    return path


def _smoke(tmp_path, **sections) -> Path:
    profile = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    for sec, values in sections.items():
        profile[sec] = {**(profile.get(sec) or {}), **values}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def _cli(*args, env=None, timeout=600):
    return subprocess.run([PY, "-m", "kit", *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


# ---------------------------------------------------------------------------------------- checkpoints
def test_the_planted_pickle_would_run_code_if_unpickled(tmp_path):
    """Control: the payload below is live (so the refusals that follow mean something)."""
    marker = tmp_path / "pwned-control"
    path = _plant(tmp_path / "evil.pt", marker)
    subprocess.run([PY, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"], check=False, capture_output=True)
    assert marker.exists()


def test_loading_a_planted_checkpoint_runs_no_code_at_any_entry_point(tmp_path):
    from kit.store import registry

    marker = tmp_path / "pwned"
    path = _plant(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    url = f"sqlite:///{tmp_path / 'kit.db'}"
    folds = pd.DataFrame({"fold": [0, 1], "n_obs": [10, 10], "direction_accuracy": [0.6, 0.6], "leakage_rows": [0, 0]})
    with pytest.raises(CheckpointError, match="refused to load"):
        registry.register("linear", "u", path, "2020-01-01", folds, model_dir=tmp_path / "m", db=url)
    assert registry.list_models(db=url).empty and not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
    assert not marker.exists()


@pytest.mark.slow
def test_a_planted_checkpoint_behind_a_registered_model_stops_the_paper_step(tmp_path):
    """An attacker with write access to the files and the database swaps a registered checkpoint and
    fixes its recorded sha256: the paper step refuses it with one line, exit 65, and runs nothing."""
    import hashlib

    import sqlalchemy as sa

    from kit import live
    from kit.store import schema as S
    from kit.store.engine import get_engine

    url = f"sqlite:///{tmp_path / 'kit.db'}"
    cfg = {"account": "evil", "scope": "t", "require_active": False, "symbols": ["AAPL", "KO"], "history_start": "2015-01-01",
           "state_dir": str(tmp_path / "state")}
    row = live.prepare_model(cfg, "2020-12-31", db=url, epochs=1, hidden_size=3, test_years=2)
    marker = tmp_path / "pwned-paper"
    _plant(Path(row["checkpoint_path"]), marker)
    sha = hashlib.sha256(Path(row["checkpoint_path"]).read_bytes()).hexdigest()
    with get_engine(url).begin() as conn:
        conn.execute(sa.update(S.models).where(S.models.c.id == int(row["id"])).values(checkpoint_sha256=sha))
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"notebooks": ["40_paper_trade"], "paper": cfg}))
    out = _cli("paper", "--profile-file", str(profile), "--as-of", "2021-01-04", "--db", url)
    assert out.returncode == 65, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "refused to load" in out.stderr
    assert not marker.exists()
    assert list(live.paper_history("evil", db=url)["runs"]["status"]) == ["failed"]


# ---------------------------------------------------------------------------------------- bad inputs
BAD_INPUTS = [
    # (section, key, value, what the user is told)
    ("20_train", "epochs", "ten", "notebook 20_train: epochs must be an integer, got 'ten'"),
    ("20_train", "epochs", 0, "epochs must be >= 1, got 0"),
    ("20_train", "epochs", -1, "epochs must be >= 1, got -1"),
    ("20_train", "epoch", 3, "section '20_train': unknown key 'epoch' (did you mean 'epochs'?)"),
    ("shared", "n_symbol", 3, "section 'shared': unknown key 'n_symbol' (did you mean 'n_symbols'?)"),
    ("shared", "start", "2022-01-01", "start 2022-01-01 is not before end 2021-04-21"),
    ("shared", "end", "yesterday", "end must be a date (YYYY-MM-DD), got 'yesterday'"),
    ("20_train", "test_start", "2030-01-01", "test_start 2030-01-01 must lie in [start, end)"),
    ("shared", "symbols", ["AAPL", "ZZZZ"], "symbols not in the data source sp500_daily_1999_2021.parquet: ['ZZZZ']"),
    ("20_train", "models", ["dmn_lstm", "gpt"], "models names 'gpt', not a model of the catalogue"),
    ("20_train", "val_fraction", 0.9, "val_fraction must be in [1e-09, 0.5], got 0.9"),
    ("20_train", "dropout", 1.5, "dropout must be in [0.0, 0.999999], got 1.5"),
    ("30_backtest", "cost_bps", "abc", "notebook 30_backtest: cost_bps must be a number, got 'abc'"),
    ("20_train", "members", ["dmn_lstm", "ldtm"], "members must be a list of position models"),
    ("20_trian", "epochs", 3, "unknown top-level key '20_trian' (did you mean '20_train'?)"),
]


@pytest.mark.parametrize("section,key,value,message", BAD_INPUTS, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD_INPUTS])
def test_bad_profile_values_are_refused_before_anything_runs(tmp_path, section, key, value, message):
    path = _smoke(tmp_path, **{section: {key: value}})
    with pytest.raises(reports.ProfileError) as err:
        p = reports.load_profile(path=path)
        reports.check_profile(p)
        reports.check_values(p)
    assert message in str(err.value)


BAD_ARGS = [
    (["run", "--profile", "../../etc/passwd"], 2, "is not a profile name"),
    (["run", "--profile", "nope"], 2, "profile 'nope' not found"),
    (["run", "--profile", "smoke", "--notebooks", str(ROOT / "notebooks" / "10_explore")], 2, "is not a notebook name"),
    (["run", "--profile", "smoke", "--notebooks", "99_nothing"], 2, "notebook '99_nothing' not found"),
    (["run", "--profile", "smoke", "--reuse-artifacts", "../../x"], 2, "neither a run folder nor a run id"),
    (["paper", "--account", "../../etc"], 2, "paper account must be letters"),
    (["paper", "--profile", "../x"], 2, "is not a profile name"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args,code,message", BAD_ARGS, ids=[" ".join(a[:3]) for a, _, _ in BAD_ARGS])
def test_bad_arguments_give_one_line_and_a_distinct_exit_code(tmp_path, args, code, message):
    out = _cli(*args, "--reports-dir" if args[0] == "run" else "--db", str(tmp_path / "r") if args[0] == "run" else f"sqlite:///{tmp_path}/k.db")
    assert out.returncode == code, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert not (tmp_path / "r" / "runs").exists()


@pytest.mark.slow
def test_a_bad_value_through_the_cli_is_one_line_exit_2_and_nothing_runs(tmp_path):
    out = _cli("run", "--profile-file", str(_smoke(tmp_path, **{"20_train": {"epochs": "ten"}})), "--reports-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and out.stderr.strip() == (
        "kit run: ProfileError: profile 'profile', notebook 20_train: epochs must be an integer, got 'ten'"
    )
    assert not (tmp_path / "r" / "runs").exists()


# ---------------------------------------------------------------------------------------- run states
@pytest.mark.slow
def test_a_second_run_exits_75_at_once_while_the_first_holds_the_lock(tmp_path):
    from kit.base.locks import file_lock

    with file_lock(tmp_path / ".lock"):
        t0 = time.perf_counter()
        out = _cli("run", "--profile", "smoke", "--reports-dir", str(tmp_path))
        seconds = time.perf_counter() - t0
    assert out.returncode == 75 and "another run holds" in out.stderr
    assert seconds < 3.0, seconds  # the lock is checked before any heavy import (measured 0.1-0.3 s)


@pytest.mark.slow
def test_a_killed_run_is_marked_interrupted_by_the_next_index(tmp_path):
    proc = subprocess.Popen([PY, "-m", "kit", "run", "--profile", "smoke", "--notebooks", "10_explore", "--reports-dir", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    run_json = None
    while time.time() < deadline:
        found = list(tmp_path.glob("runs/*/run.json"))
        if found and json.loads(found[0].read_text()).get("notebooks"):
            run_json = found[0]
            break
        time.sleep(0.2)
    assert run_json is not None, "the run did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(run_json.read_text())["status"] == "running"  # what a killed process leaves
    out = _cli("index", "--reports-dir", str(tmp_path))
    assert out.returncode == 0 and "marked interrupted" in out.stdout
    assert json.loads(run_json.read_text())["status"] == "interrupted"
    assert "interrupted" in (tmp_path / "index.html").read_text()


def _fake_execute(fail_with=None, write=True):
    def execute(src, dst, **kw):
        if write:
            Path(dst).write_text(Path(src).read_text())
        if fail_with is not None:
            raise fail_with
    return execute


def test_a_full_disk_keeps_the_first_error_and_records_the_run_failed(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", _fake_execute(OSError(errno.ENOSPC, "No space left on device")))

    def render_fails(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device (while rendering)")

    monkeypatch.setattr(runs, "render_notebook", render_fails)
    with pytest.raises(runs.StageFailed) as err:
        reports.run_profile("smoke", reports_dir=tmp_path, notebooks=["10_explore"])
    info = json.loads((err.value.run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["error"]["stage"] == "10_explore"
    assert info["error"]["type"] == "OSError" and "No space left on device" in info["error"]["message"]
    assert "while rendering" in info["notebooks"]["10_explore"]["render_error"]  # recorded beside, not instead
    assert (tmp_path / "index.html").exists() and "failed" in (tmp_path / "index.html").read_text()
    assert "No space left on device" in (err.value.run_dir / "error.log").read_text()


def test_too_little_free_space_is_refused_before_anything_runs(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    with pytest.raises(runs.NotWritableError, match="has only 1 MB free"):
        reports.run_profile("smoke", reports_dir=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_a_read_only_reports_folder_is_found_before_anything_runs(tmp_path, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(runs.NotWritableError, match="is not writable"):
        reports.run_profile("smoke", reports_dir=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_a_read_only_database_is_found_before_any_training(tmp_path):
    from kit.store.engine import dispose_engines, get_engine

    db = tmp_path / "ro.db"
    get_engine(f"sqlite:///{db}")  # a real database, schema and all
    dispose_engines()
    ro = f"sqlite:///file:{db}?mode=ro&uri=true"  # opened read-only: every write fails, root or not
    with pytest.raises(runs.NotWritableError, match="does not accept writes"):
        runs.check_writable(tmp_path / "reports", [ro])
    path = _smoke(tmp_path, **{"20_train": {"db_url": ro}})
    with pytest.raises(runs.NotWritableError):
        reports.run_profile(profile_file=path, reports_dir=tmp_path / "reports")
    assert not (tmp_path / "reports" / "runs").exists()


@pytest.mark.slow
def test_a_failing_stage_is_one_line_exit_1_with_its_log(tmp_path):
    # passes every check, then fails inside the notebook: too little history before test_start
    path = _smoke(tmp_path, shared={"start": "2015-06-01"}, **{"20_train": {"test_start": "2015-09-01"}})
    out = _cli("run", "--profile-file", str(path), "--notebooks", "20_train", "--reports-dir", str(tmp_path / "r"))
    assert out.returncode == 1, out.stderr
    lines = [x for x in out.stderr.strip().splitlines() if not x.startswith("[IPKernelApp]")]  # the kernel's own start-up notice
    assert len(lines) == 1 and lines[0].startswith("kit run: 20_train: ValueError:") and "error.log" in lines[0], out.stderr
    run_json = next((tmp_path / "r").glob("runs/*/run.json"))
    info = json.loads(run_json.read_text())
    assert info["status"] == "failed" and info["error"]["stage"] == "20_train" and info["notebooks"]["20_train"]["html"]
    assert (run_json.parent / "error.log").read_text().strip()


def test_unexpected_errors_are_one_line_with_a_log(tmp_path, monkeypatch, capsys):
    from kit import cli

    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path))

    def boom(args):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(cli, "_index", boom)
    assert cli.main(["index"]) == 70
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kit index: RuntimeError: something nobody expected (details in ")
    log = Path(err[0].split("(details in ")[1].rstrip(")"))
    assert "Traceback" in log.read_text() and log.is_relative_to(tmp_path)
    np.testing.assert_equal(cli._classify(KeyboardInterrupt()), 70)  # (main maps Ctrl-C to 130 before classifying)
