"""Cost of verifying the prediction ledger (kit.store.ledger.verify) as it grows: the whole chain
(keyed HMAC hashes, fill hashes, head, anchors) recomputed from the database.

    .venv/bin/python benchmarks/bench_ledger_verify.py [--rows 1000000]

Builds a SQLite ledger in a temporary folder with ``--rows`` snapshots (500 symbols a day, 3 horizons
each, about a third of the outcomes filled) through the kit's own snapshot and fillback, then times
verify() at each size. The reference run in the same process is sha256 over the same canonical
texts (the hashing alone), so the ratio says how much of the cost is the database read and the
Python loop. Single-threaded (SQLite and the loop use one core).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=500)
    args = ap.parse_args()
    from kit.store import ledger, registry
    from kit.store.engine import dispose_engines

    print(f"# bench_ledger_verify: rows={args.rows} symbols={args.symbols} load average {os.getloadavg()[0]:.2f} "
          f"(1 min) on {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M:%S')}")
    n_days = -(-args.rows // args.symbols)
    dates = pd.bdate_range("2010-01-04", periods=n_days + 30)
    symbols = [f"S{i:04d}" for i in range(args.symbols)]
    rng = np.random.default_rng(0)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(dates), len(symbols))), 0)), index=dates, columns=symbols)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/kit.db"
        ck = Path(tmp) / "m.pt"
        from kit.models import BaselineConfig, PerStepBaseline, save_checkpoint

        save_checkpoint(ck, PerStepBaseline(BaselineConfig(8)), feature_names=[f"f{i}" for i in range(8)], data_sha256="x", train_period=("a", "b"))
        folds = pd.DataFrame({"fold": [0, 1], "n_obs": [10, 10], "direction_accuracy": [0.6, 0.6], "leakage_rows": [0, 0]})
        mid = registry.register("linear", "bench", ck, "2010-01-01", folds, model_dir=Path(tmp) / "m", db=url)
        written, t_build = 0, time.perf_counter()
        checkpoints = sorted({min(args.rows, x) for x in (10_000, 100_000, 300_000, args.rows)})
        per_call = 50 * args.symbols  # 50 days per snapshot call
        day = 0
        for target in checkpoints:
            while written < target:
                ds = dates[day : day + min(50, -(-(target - written) // args.symbols))]
                idx = pd.MultiIndex.from_product([ds, symbols], names=["run_date", "symbol"])
                pred = pd.DataFrame({"position": rng.uniform(-1, 1, len(idx))}, index=idx).reset_index()
                pred = pred.iloc[: target - written]
                ledger.snapshot(pred, close, mid, db=url)
                written += len(pred)
                day += len(ds)
            ledger.fillback(close.iloc[: max(1, day - 20)], db=url)
            build = time.perf_counter() - t_build
            t0 = time.perf_counter()
            rep = ledger.verify(db=url)
            t_verify = time.perf_counter() - t0
            assert rep.ok, rep.problems.head()
            # reference: sha256 of as many canonical texts (hashing alone)
            text = ledger._canonical_snapshot(1, 1, "S0000", "2010-01-04", 100.0, 1, 0.5, "2021-01-01T00:00:00.000000Z", [(1, None), (5, None), (21, None)])
            t0 = time.perf_counter()
            for _ in range(rep.n_rows):
                ledger._sha("0" * 64, text)
            t_ref = time.perf_counter() - t0
            print(f"rows {rep.n_rows:>9,}  filled outcomes {rep.n_filled:>9,}  verify {t_verify:7.2f} s  "
                  f"({t_verify / rep.n_rows * 1e6:5.1f} us/row; {t_verify / t_ref:5.1f}x the bare sha256 of the rows)  "
                  f"[built in {build:.0f} s; per_call {per_call}]  load {os.getloadavg()[0]:.2f}", flush=True)
        dispose_engines()


if __name__ == "__main__":
    main()
