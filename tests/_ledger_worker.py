"""Helpers for the registry, ledger and db tests, and a worker run as a separate process.

As a module: :func:`fresh_db` (a fresh database per test: a SQLite file, or a fresh PostgreSQL schema
when ``KIT_DB_URL`` names a PostgreSQL server), :func:`synthetic_close`, :func:`add_model`,
:func:`spawn` and :func:`wait_for`.

As a script (``python -m tests._ledger_worker COMMAND JSON``), one of the commands below, run in its
own interpreter so the tests can run writers at the same moment and kill them with SIGKILL in the
middle of a transaction (the ``pause`` commands install a hook that runs inside the transaction,
just before its commit: it creates ``ready_file`` and sleeps until killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
ARCH = {"model": "dmn_lstm", "n_features": 8, "hidden_size": 5, "num_layers": 1, "dropout": 0.1}


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.startswith("postgresql")


@contextlib.contextmanager
def fresh_db(tmp_path: Path):
    """Yield the URL of an empty database for one test and clean up after it.

    With ``KIT_DB_URL`` naming a PostgreSQL database, a new schema ``t_<hex>`` is created and the URL
    sets ``search_path`` to it (dropped afterwards); otherwise a SQLite file in ``tmp_path``."""
    import sqlalchemy as sa

    from kit.store import engine as kdb

    base = os.environ.get("KIT_DB_URL", "")
    if not is_postgres_url(base):
        url = f"sqlite:///{tmp_path / 'kit.db'}"
        try:
            yield url
        finally:
            kdb.dispose_engines()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        kdb.dispose_engines()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def synthetic_close(days: int = 60, symbols=("AAA", "BBB", "CCC", "DDD"), seed: int = 0, start: str = "2021-01-04") -> pd.DataFrame:
    """A deterministic ``(T, N)`` frame of positive prices on business days."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range(start, periods=days)
    values = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (days, len(symbols))), axis=0))
    return pd.DataFrame(values, index=idx, columns=list(symbols))


def add_model(url: str, tmp_path: Path, *, name: str = "dmn_lstm", scope: str = "universe4-test", trained_on: str = "2020-12-31",
              accuracies=(0.55, 0.56), n_obs=(100, 100), arch: dict | None = None, **kw) -> int:
    """Register a model with hand-made fold metrics and a small stand-in checkpoint file (the
    architecture is passed explicitly, so the file is not read as a torch checkpoint)."""
    from kit.store import registry

    ck = Path(tmp_path) / f"ck_{uuid.uuid4().hex[:8]}.pt"
    ck.write_bytes(b"stand-in checkpoint " + name.encode() + trained_on.encode())
    folds = pd.DataFrame({"fold": range(len(accuracies)), "n_obs": list(n_obs), "direction_accuracy": list(accuracies), "leakage_rows": 0})
    return registry.register(name, scope, ck, trained_on, folds, architecture=arch or ARCH, model_dir=Path(tmp_path) / "models", db=url, **kw)


def predictions_for(close: pd.DataFrame, symbols, dates, seed: int = 0, forecasts: bool = True) -> pd.DataFrame:
    """Deterministic predictions for every (symbol, date) pair."""
    rng = np.random.default_rng(seed)
    rows = [(s, d) for d in dates for s in symbols]
    p = pd.DataFrame(rows, columns=["symbol", "run_date"])
    p["position"] = rng.uniform(-1, 1, len(p)).round(6)
    if forecasts:
        for h in (1, 5, 21):
            p[f"forecast_{h}"] = rng.normal(0, 0.01 * np.sqrt(h), len(p)).round(6)
    return p


def spawn(command: str, **args) -> subprocess.Popen:
    """Start ``python -m tests._ledger_worker command json(args)`` with the current interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "tests._ledger_worker", command, json.dumps(args)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Poll until ``path`` exists; raise (with the worker's stderr) if the worker exits first."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} before {path}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


# ------------------------------------------------------------------------------------------------
# worker commands
# ------------------------------------------------------------------------------------------------


def _pause(ready_file: str):
    def hook():
        Path(ready_file).write_text("inside the transaction")
        time.sleep(600)  # until killed

    return hook


def _wait_go(args: dict) -> None:
    if args.get("go_file"):
        wait_for(Path(args["go_file"]), timeout=60)


def main(argv: list[str]) -> int:
    command, args = argv[0], json.loads(argv[1])
    from kit.store import engine as kdb
    from kit.store import ledger, registry

    url = args["url"]
    if command == "schema":
        _wait_go(args)
        kdb.get_engine(url)
        print(json.dumps({"version": kdb.schema_version(url)}))
        return 0
    close = synthetic_close(**args.get("close", {}))
    if command == "snapshot":
        # one transaction per date (interleaves with another writer) or all dates in one call
        if args.get("ready_file"):
            Path(args["ready_file"]).write_text("started")
        _wait_go(args)
        dates = [pd.Timestamp(d) for d in args["dates"]]
        calls = [[d] for d in dates] if args.get("per_date", True) else [dates]
        ok, refused = 0, []
        for ds in calls:
            pred = predictions_for(close, args["symbols"], ds, seed=args.get("seed", 0))
            try:
                ok += len(ledger.snapshot(pred, close, args["model_id"], db=url))
            except ledger.DuplicateSnapshotError as exc:
                refused.append(str(exc))
        print(json.dumps({"written": ok, "refused": refused}))
        return 0
    from kit.base import faults

    if command == "snapshot_pause":
        faults._HOOKS["ledger.snapshot_before_commit"] = _pause(args["ready_file"])
        pred = predictions_for(close, args["symbols"], [pd.Timestamp(d) for d in args["dates"]])
        ledger.snapshot(pred, close, args["model_id"], db=url)
        return 0
    if command == "snapshot_then_wait":
        pred = predictions_for(close, args["symbols"], [pd.Timestamp(d) for d in args["dates"]])
        ledger.snapshot(pred, close, args["model_id"], db=url)
        _pause(args["ready_file"])()  # killed here, between snapshot and fillback
        ledger.fillback(close, db=url)
        return 0
    if command == "fillback_pause":
        faults._HOOKS["ledger.fillback_before_commit"] = _pause(args["ready_file"])
        ledger.fillback(close, db=url)
        return 0
    if command == "gate_pause":
        faults._HOOKS["registry.gate_before_commit"] = _pause(args["ready_file"])
        registry.apply_gate(args["model_id"], db=url)
        return 0
    if command == "register_pause":
        faults._HOOKS["registry.register_before_commit"] = _pause(args["ready_file"])
        add_model(url, Path(args["tmp"]), trained_on=args["trained_on"])
        return 0
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
