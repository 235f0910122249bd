"""Execution backends: tasks seeded from their identity, the same positions and checkpoints from the
serial, process and Ray backends, dead workers retried without a second registry or ledger row."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kit import exec as kexec
from kit import training
from kit.training import tasks as T


def _frames(days=650, symbols=("A", "B", "C", "D"), seed=11):
    from kit import data
    from tests.conftest import make_ohlcv

    return data.wide_fields(data.adjust_prices(make_ohlcv(symbols, days=days, seed=seed, start="2005-01-03")))


SETTINGS = training.WalkForwardSettings(
    test_start="2007-03-01", test_size=60, lookback=21, hidden_size=4, epochs=2, patience=2, batch_size=32, seed=3,
    members=("dmn_lstm", "linear", "mlp"), ensemble_method="stacked", ldtm_hidden_size=4, ldtm_lookback=10,
    ldtm_sample_stride=2, ldtm_chunk_size=2,
)
MODELS = ["dmn_lstm", "ensemble", "ldtm"]


def _run(tmp_path, name, backend, models=MODELS):
    ck = tmp_path / name
    ck.mkdir()
    res = SETTINGS.run_models(_frames(), models, checkpoint_dir=ck, progress=False, backend=backend)
    return res, {p.name: torch.load(p, weights_only=True) for p in sorted(ck.glob("*.pt"))}


def _same_payload(a, b) -> bool:
    """Checkpoint payloads equal: every tensor bit for bit, every other value equal. (The files'
    bytes differ: torch.save names the archive after the temporary file of the atomic write.)"""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_payload(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(_same_payload(x, y) for x, y in zip(a, b, strict=True))
    return a == b


TREE_SETTINGS = training.WalkForwardSettings(
    test_start="2008-09-02", test_size=120, seed=5, n_quantiles=3, tree_rounds=30, tree_early_stopping=5, val_fraction=0.2,
)
TREE_MODELS = ["lgbm_dollar_profit", "xgb_direction", "lambdamart"]


def _run_trees(tmp_path, name, backend):
    """The tree and ranker models: one task per fold fit (for the ranker, its fit on the fold's
    rebalance dates)."""
    ck = tmp_path / f"trees-{name}"
    ck.mkdir()
    frames = _frames(days=1200, symbols=tuple(f"S{i}" for i in range(9)), seed=5)
    res = TREE_SETTINGS.run_models(frames, TREE_MODELS, checkpoint_dir=ck, progress=False, backend=backend)
    return res, {p.name: torch.load(p, weights_only=True) for p in sorted(ck.glob("*.pt"))}


def _assert_same(a, b):
    (ra, ca), (rb, cb) = a, b
    assert list(ra) == list(rb)
    for m in ra:
        pd.testing.assert_frame_equal(ra[m].positions, rb[m].positions, check_exact=True)
        if ra[m].scores is not None:
            pd.testing.assert_frame_equal(ra[m].scores, rb[m].scores, check_exact=True)
        for h in ra[m].forecasts or {}:
            pd.testing.assert_frame_equal(ra[m].forecasts[h], rb[m].forecasts[h], check_exact=True)
        cols = [c for c in ra[m].folds.columns if c not in ("seconds", "cpu_seconds", "node", "checkpoint")]
        pd.testing.assert_frame_equal(ra[m].folds[cols], rb[m].folds[cols], check_exact=True)
    assert sorted(ca) == sorted(cb) and len(ca) > 0
    for name in ca:
        assert _same_payload(ca[name], cb[name]), f"checkpoint {name} differs"


class _Reversed:
    """A runner that executes tasks last to first (results in the order given)."""

    def map(self, tasks, shared=None, progress=None):
        out = [T.run_task(t, shared, 1) for t in reversed(list(tasks))]
        return out[::-1]

    def describe(self):
        return {"backend": "reversed", "threads": 1}


def test_a_fit_task_is_seeded_from_fold_and_member_not_from_execution_order(tmp_path):
    frames = _frames()
    res = SETTINGS.run(frames, "dmn_lstm", progress=False)
    # fold 1 by hand, as the task defines it: seed = seed + fold, fresh model, Trainer, predict the test block
    from kit.features import feature_set, make_sequences, next_day_target
    from kit.models import make_model

    close = frames["close"]
    X = feature_set("dmn", close).values.astype(np.float32)
    y = next_day_target(close, target_vol=SETTINGS.target_vol)[0].to_numpy(dtype="float64")
    split = training.walk_forward_splits(close.index, SETTINGS.test_start, SETTINGS.test_size, None, SETTINGS.val_fraction)[1]
    seed = SETTINGS.seed + 1
    with T.pinned_threads(1):
        training.set_seed(seed)
        net = make_model("dmn_lstm", X.shape[-1], SETTINGS.hidden_size, SETTINGS.dropout, 1, 4, kind="position")
        cfg = training.TrainConfig(**{**vars(SETTINGS.train_config()), "seed": seed})
        training.Trainer(cfg).fit(net, make_sequences(X, y, *split.train, 21), make_sequences(X, y, *split.val, 21))
        pos = training.predict_positions(net, X, *split.test, 21)
    got = res.positions.loc[close.index[split.test[0]] : close.index[split.test[1] - 1]].to_numpy()
    np.testing.assert_array_equal(got, pos)
    # and every task, run last to first, gives the same results
    rev = SETTINGS.run_models(frames, MODELS, progress=False, backend=_Reversed())
    fwd = SETTINGS.run_models(frames, MODELS, progress=False)
    for m in MODELS:
        pd.testing.assert_frame_equal(rev[m].positions, fwd[m].positions, check_exact=True)
    pd.testing.assert_frame_equal(fwd["dmn_lstm"].positions, res.positions, check_exact=True)
    assert {k: fwd["ensemble"].config["exec"][k] for k in ("backend", "threads", "workers")} == {"backend": "serial", "threads": 1, "workers": 1}


def test_run_models_runs_a_shared_fit_once():
    frames = _frames()
    calls = []

    class Counting(T.SerialRunner):
        def map(self, tasks, shared=None, progress=None):
            calls.append([t.key for t in tasks])
            return super().map(tasks, shared, progress)

    SETTINGS.run_models(frames, ["dmn_lstm", "ensemble"], progress=False, backend=Counting())
    fits = calls[0]
    folds = 2
    assert len(fits) == len(set(fits)) == folds * 3  # dmn_lstm (shared with the ensemble's member), linear, mlp
    assert sum(k.startswith("fit/dmn_lstm/") for k in fits) == folds
    assert len(calls[1]) == folds and all(k.startswith("combine/") for k in calls[1])


def test_pinned_threads_sets_and_restores():
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with T.pinned_threads(1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        with T.pinned_threads(0):
            pass


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("KIT_TASK_THREADS", "3")
    assert T.default_threads() == 3 and T.SerialRunner().threads == 3
    monkeypatch.setenv("KIT_TASK_THREADS", "two")
    with pytest.raises(ValueError, match="KIT_TASK_THREADS must be an integer >= 1, got 'two'"):
        T.default_threads()


def test_backend_names_and_options_are_checked():
    with pytest.raises(ValueError, match="did you mean 'process'"):
        kexec.make_backend("proces")
    with pytest.raises(ValueError, match="address='x:1' is for the ray backend"):
        kexec.make_backend("process", address="x:1")
    with pytest.raises(ValueError, match="workers=2 is for the process backend"):
        kexec.make_backend("serial", workers=2)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        kexec.make_backend("process", workers=0)
    with pytest.raises(ValueError, match="kit.exec.make_backend"):
        training.walk_forward(_frames()["close"], test_start="2007-03-01", backend="process")
    assert kexec.make_backend("serial", threads=2).describe() == {"backend": "serial", "threads": 2, "workers": 1}


def _boom(args, shared):
    raise ValueError(f"bad input {args}")


@pytest.mark.slow
def test_process_backend_reports_a_task_error_and_gives_up_on_dying_workers(monkeypatch, tmp_path):
    with kexec.ProcessBackend(workers=2, max_retries=1) as b:
        with pytest.raises(ValueError, match="bad input 7") as info:
            b.map([T.Task(_boom, 7, "boom/7")])
        assert "in task boom/7" in "".join(getattr(info.value, "__notes__", []))
        monkeypatch.setenv("KIT_FAULT_AT", "exec.task")  # every attempt dies
        with pytest.raises(RuntimeError, match=r"a worker died 2 times \(max_retries=1\)"):
            b.map([T.Task(_boom, 1, "boom/1")])


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_serial_process_and_ray_give_bit_identical_positions_and_checkpoints(tmp_path, ray_local):
    serial = _run(tmp_path, "serial", None)
    with kexec.ProcessBackend(workers=2) as b:
        process = _run(tmp_path, "process", b)
        assert process[0]["ldtm"].config["exec"]["workers"] == 2
    ray = _run(tmp_path, "ray", kexec.RayBackend())
    _assert_same(serial, process)
    _assert_same(serial, ray)
    nodes = set(ray[0]["dmn_lstm"].folds["node"])
    assert len(nodes) == 1 and len(next(iter(nodes))) == 56  # a Ray node id (hex), recorded per fold
    # the tree and ranker models' fold fits are tasks too, with the same results on every backend
    serial_t = _run_trees(tmp_path, "serial", None)
    with kexec.ProcessBackend(workers=2) as b:
        process_t = _run_trees(tmp_path, "process", b)
    ray_t = _run_trees(tmp_path, "ray", kexec.RayBackend())
    _assert_same(serial_t, process_t)
    _assert_same(serial_t, ray_t)
    for m in TREE_MODELS:
        tasks = process_t[0][m].tasks
        assert (tasks["stage"] == f"tree:{m}").all() and len(tasks) == len(process_t[0][m].folds) == 3
        assert len(set(tasks["pid"])) == 2 and (tasks["threads"] == 1).all()  # both workers, one thread each
        assert process_t[0][m].config["threads"] == 1 and process_t[0][m].config["exec"]["backend"] == "process"
        assert len(set(ray_t[0][m].folds["node"]).pop()) == 56
    assert sum(n.startswith("lambdamart_fold") for n in serial_t[1]) == 3


def _register_and_snapshot(results, close, db, tmp_path):
    from kit.store import ledger, registry

    decisions = registry.register_and_gate(results, close, "test-exec", model_dir=tmp_path / "models", db=db)
    ldtm_id = int(decisions.set_index("name").loc["ldtm", "model_id"])
    fc = results["ldtm"].forecasts
    day = fc[1].index[-30]
    rows = pd.DataFrame({"symbol": fc[1].columns, "run_date": day,
                         **{f"forecast_{h}": fc[h].loc[day].to_numpy() for h in (1, 5, 21)}}).dropna()
    ledger.snapshot(rows, close, ldtm_id, db=db)
    models = registry.list_models(db=db)
    return len(models), len(ledger.snapshots(db=db))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["process", "ray"])
def test_a_killed_worker_is_retried_and_nothing_is_written_twice(which, tmp_path, monkeypatch, request):
    ref_results, ref_ckpt = _run(tmp_path, "serial", None)
    marker = tmp_path / "died"
    monkeypatch.setenv("KIT_FAULT_AT", "exec.task")
    monkeypatch.setenv("KIT_FAULT_ONCE", str(marker))
    if which == "process":
        backend = kexec.ProcessBackend(workers=2)
    else:
        request.getfixturevalue("ray_local")
        backend = kexec.RayBackend()
    try:
        got = _run(tmp_path, which, backend)
    finally:
        backend.close()
        monkeypatch.delenv("KIT_FAULT_AT")
    assert marker.exists()  # one worker did die in a task
    if which == "process":
        assert backend.retries == 1
    _assert_same((ref_results, ref_ckpt), got)
    close = _frames()["close"]
    n_ref = _register_and_snapshot(ref_results, close, f"sqlite:///{tmp_path / 'ref.db'}", tmp_path / "a")
    n_got = _register_and_snapshot(got[0], close, f"sqlite:///{tmp_path / 'got.db'}", tmp_path / "b")
    assert n_got == n_ref and n_ref[0] == len(MODELS) and n_ref[1] == 4


def test_process_backend_cleans_its_shared_memory():
    b = kexec.ProcessBackend(workers=1)
    d = b._dir
    assert Path(d).is_dir()
    b.close()
    assert not Path(d).exists()
    assert os.environ.get("KIT_FAULT_AT") is None


def test_lpt_makespan_by_hand():
    from kit.exec import lpt_makespan, predict_wall, stage_times

    assert lpt_makespan([], 2) == 0.0
    assert lpt_makespan([5, 4, 3, 3, 3], 1) == 18
    # LPT on 2 slots: 5 | 4, then 3 -> slot 4 (7), 3 -> slot 5 (8), 3 -> slot 7 (10): makespan 10 (optimum 9)
    assert lpt_makespan([3, 5, 3, 4, 3], 2) == 10
    assert lpt_makespan([7, 1, 1, 1], 4) == 7  # one long task bounds the makespan
    assert predict_wall([[3, 5, 3, 4, 3], [1, 1]], nodes=1, cores=2, serial=20, startup=2) == 20 + 2 + 10 + 1
    assert predict_wall([[3, 5, 3, 4, 3]], nodes=2, cores=2, threads=2) == 10
    with pytest.raises(ValueError, match="cannot run a task of 4 threads"):
        predict_wall([[1]], nodes=1, cores=2, threads=4)
    with pytest.raises(ValueError, match="finite and >= 0"):
        lpt_makespan([1, -1], 2)
    t = pd.DataFrame({"task": ["a", "b", "a", "c"], "stage": ["fit", "fit", "fit", "combine"], "cpu_seconds": [2.0, 3.0, 2.0, 0.5]})
    fit, comb = stage_times(t)
    assert sorted(fit) == [2.0, 3.0] and list(comb) == [0.5]
    # tree models' fold fits: one stage per model, after the torch stages, in the order they ran
    t2 = pd.concat([pd.DataFrame({"task": ["x", "y", "z"], "stage": ["tree:xgb_direction", "tree:xgb_direction", "tree:lambdamart"],
                                  "cpu_seconds": [4.0, 1.0, 2.0]}), t], ignore_index=True)
    stages = stage_times(t2)
    assert [sorted(s) for s in stages] == [[2.0, 3.0], [0.5], [1.0, 4.0], [2.0]]
    assert predict_wall(stages, nodes=1, cores=2) == 3.0 + 0.5 + 4.0 + 2.0


def test_run_records_and_passes_the_execution_options(monkeypatch):
    from kit.reports import load_profile
    from kit.reports.runs import _exec_record, _with_exec

    monkeypatch.delenv("KIT_TASK_THREADS", raising=False)
    full = load_profile("full")
    assert _exec_record(full, full["notebooks"], {}) == {"backend": "process", "address": "", "workers": 0, "threads": 1}
    rec = _exec_record(full, full["notebooks"], {"backend": "ray", "address": "10.0.0.5:6379"})
    assert rec == {"backend": "ray", "address": "10.0.0.5:6379", "workers": 0, "threads": 1}
    smoke = load_profile("smoke")
    monkeypatch.setenv("KIT_TASK_THREADS", "2")
    assert _exec_record(smoke, smoke["notebooks"], {}) == {"backend": "serial", "address": "", "workers": 0, "threads": 2}
    params = _with_exec({"seed": 0}, {"backend": "ray", "threads": 1}, accepted=["seed", "backend"])
    assert params == {"seed": 0, "backend": "ray"}  # only the parameters the notebook has


def test_cli_run_takes_backend_options(monkeypatch, tmp_path):
    from kit import cli, reports

    seen = {}

    def fake_run_profile(profile, **kw):
        seen.update(kw, profile=profile)
        return Path("/tmp/x")

    monkeypatch.setattr(reports, "run_profile", fake_run_profile)
    # its own reports folder: a real run of this checkout may hold reports/.lock meanwhile
    assert cli.main(["run", "--profile", "smoke", "--backend", "ray", "--address", "127.0.0.1:6391", "--threads", "1",
                     "--reports-dir", str(tmp_path)]) == 0
    assert seen["exec_options"] == {"backend": "ray", "address": "127.0.0.1:6391", "workers": None, "threads": 1}
    with pytest.raises(SystemExit):
        cli.main(["run", "--backend", "dask"])


def test_a_run_outside_git_takes_its_commit_from_the_environment(tmp_path, monkeypatch):
    from kit.reports.runs import git_commit

    monkeypatch.delenv("KIT_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == ("nogit", False)  # e.g. the directory ray job submit ships
    monkeypatch.setenv("KIT_GIT_COMMIT", "0123abc")
    assert git_commit(tmp_path) == ("0123abc", False)


def test_process_backend_removes_the_shared_folder_of_a_dead_driver(tmp_path):
    import subprocess
    import sys

    from kit.exec.backends import _remove_orphans

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    orphan = tmp_path / f"kit-exec-{dead}-abc"
    alive = tmp_path / f"kit-exec-{os.getpid()}-def"
    orphan.mkdir()
    alive.mkdir()
    _remove_orphans(str(tmp_path))
    assert not orphan.exists() and alive.exists()
