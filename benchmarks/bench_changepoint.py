"""Changepoint-detection features: GP-CPD windows per second and BOCPD cells per second on this machine.

Cases (all in one process, threads pinned: torch and numba use ``BENCH_THREADS`` threads, default 1;
the load average is printed in the header because other processes on the machine distort timings):

1. GP-CPD windows per second, for each lookback: ``kit.features.changepoint.fit_gp_changepoint_windows`` on a
   batch of real return windows (the default Kalman likelihood, working set from ``chunk_size``)
   against the same function called on one window at a time, and against the batched dense
   (Cholesky) likelihood; the one-at-a-time and dense rows run on a sample of the same windows until
   the time budget is spent. Windows are drawn at random (seeded) from the committed store.
2. A 100-symbol daily universe: the 100 most liquid symbols as known on 2000-12-29
   (``kit.data.select_universe``: median dollar volume over the preceding 252 days, no look-ahead;
   the ``daily`` profile's universe), ``kit.features.cache.build_cpd_features`` (GP, lookbacks 21
   and 126, into a temporary cache) on their last ``--days`` dates (the full history would take
   hours), then extrapolated to their whole history and to the whole store (504 symbols, ~5,400
   days) from the measured windows per second and the exact number of windows. BOCPD (the ``bocpd``
   feature set's k = (5, 21)) is built in full through the cache.
3. BOCPD cells per second on the whole store (``kit.features.bocpd.bocpd`` on returns, R = 500,
   k = (5, 21), and the ``bocpd`` feature set on closes, the models' path), against the plain numpy
   implementation of the tests on a few symbols.

    BENCH_THREADS=1 .venv/bin/python benchmarks/bench_changepoint.py [--budget 60] [--days 126]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
os.environ["NUMBA_NUM_THREADS"] = str(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import data  # noqa: E402
from kit.features import bocpd as bo  # noqa: E402
from kit.features import cache as fc  # noqa: E402
from kit.features import changepoint as cp  # noqa: E402
from tests.test_changepoint import bocpd_reference  # noqa: E402

torch.set_num_threads(THREADS)


def load_returns():
    prices, _ = data.load_prices()
    close = data.to_wide(prices, "close")
    return prices, close, close.pct_change(fill_method=None)


def sample_windows(returns: np.ndarray, lookback: int, count: int, seed: int = 0) -> np.ndarray:
    valid = cp.valid_window_ends(returns, lookback)
    tt, jj = np.nonzero(valid)
    pick = np.random.default_rng(seed).choice(len(tt), size=min(count, len(tt)), replace=False)
    view = np.lib.stride_tricks.sliding_window_view(returns, lookback + 1, axis=0)
    return np.ascontiguousarray(view[tt[pick] - lookback, jj[pick]])


def gp_rates(returns: np.ndarray, lookback: int, budget: float, skip_dense: bool) -> dict:
    n_batch = {10: 8000, 21: 8000, 63: 4000, 126: 3000, 252: 1500}.get(lookback, 3000)
    W = sample_windows(returns, lookback, n_batch)
    cp.fit_gp_changepoint_windows(W[:64])  # warm-up
    t = time.perf_counter()
    res = cp.fit_gp_changepoint_windows(W)
    t_batch = time.perf_counter() - t
    out = {
        "lookback": lookback, "batch_windows": len(W), "batch_s": t_batch, "batch_rate": len(W) / t_batch,
        "iterations": float(res["iterations"].mean()), "status": {cp.STATUS_NAMES[int(k)]: int(v) for k, v in zip(*np.unique(res["status"], return_counts=True), strict=True)},
    }
    # one window at a time, same windows, until the budget is spent
    done, t0 = 0, time.perf_counter()
    while done < len(W) and time.perf_counter() - t0 < budget:
        one = cp.fit_gp_changepoint_windows(W[done : done + 1])
        assert np.array_equal(one["severity"], res["severity"][done : done + 1], equal_nan=True)  # bit-identical
        done += 1
    out["single_windows"], out["single_rate"] = done, done / (time.perf_counter() - t0)
    if not skip_dense:
        dense_cfg = cp.GPFitConfig(likelihood="dense")
        k = 64
        t0 = time.perf_counter()
        dense = cp.fit_gp_changepoint_windows(W[:k], config=dense_cfg)
        dt = time.perf_counter() - t0
        out["dense_windows"], out["dense_rate"] = k, k / dt
        out["dense_max_sev_diff"] = float(np.nanmax(np.abs(dense["severity"] - res["severity"][:k])))
    return out


def count_windows(returns: np.ndarray, lookback: int) -> int:
    return int(cp.valid_window_ends(returns, lookback).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per one-at-a-time case")
    ap.add_argument("--days", type=int, default=126, help="last dates of the 100-symbol GP build")
    ap.add_argument("--lookbacks", type=int, nargs="+", default=[21, 126])
    ap.add_argument("--skip-dense", action="store_true")
    args = ap.parse_args()
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    prices, close, rets = load_returns()
    R = np.ascontiguousarray(rets.to_numpy())
    T, N = R.shape
    print(
        f"store: {T} days x {N} symbols; torch {torch.__version__} threads {torch.get_num_threads()}, numba threads "
        f"{numba.get_num_threads()}, {os.cpu_count()} CPUs; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    print()

    # 1. GP-CPD windows per second
    rows = [gp_rates(R, lb, args.budget, args.skip_dense) for lb in args.lookbacks]
    print("GP-CPD fits (Matérn + changepoint, float64, CPU), random windows of the store:")
    print()
    print("| lookback | batched windows/s | one at a time windows/s | batched / one at a time | dense Cholesky batched windows/s | mean L-BFGS iterations | status of the batch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        dense = f"{r['dense_rate']:.1f} ({r['dense_windows']} windows)" if "dense_rate" in r else "-"
        print(
            f"| {r['lookback']} | {r['batch_rate']:.1f} ({r['batch_windows']} in {r['batch_s']:.0f} s) | {r['single_rate']:.2f} ({r['single_windows']} windows) | "
            f"{r['batch_rate'] / r['single_rate']:.0f}x | {dense} | {r['iterations']:.0f} | {r['status']} |"
        )
    print()

    # 2. 100-symbol universe
    universe = data.select_universe(prices, 100, "2000-12-29")
    close100 = close[universe]
    R100 = R[:, [close.columns.get_loc(s) for s in universe]]
    sub = close100.iloc[-(args.days + max(args.lookbacks) + 1) :]
    n_sub = {}
    with tempfile.TemporaryDirectory() as tmp:
        t_gp = {}
        for lb in args.lookbacks:
            t = time.perf_counter()
            frames = fc.build_cpd_features(sub, windows=(lb,), cache_dir=tmp, progress=False).frames
            t_gp[lb] = time.perf_counter() - t
            n_sub[lb] = int((frames[f"cp_status_{lb}"].to_numpy() != cp.STATUS_NO_WINDOW).sum())  # windows fitted
        t = time.perf_counter()
        fc.build_cpd_features(close100, windows=bo.BOCPD_K, method="bocpd", cache_dir=tmp, progress=False)
        t_b100 = time.perf_counter() - t
    print(f"100-symbol universe: the 100 most liquid as of 2000-12-29 ({universe[0]} .. {universe[-1]}), {close100.shape[0]} days")
    print()
    print("| lookback | windows built (last dates) | seconds | windows/s (build, incl. cache) | windows, full 100-symbol history | estimated hours, 100 symbols | windows, whole store | estimated hours, whole store |")
    print("|---|---|---|---|---|---|---|---|")
    for lb in args.lookbacks:
        rate = n_sub[lb] / t_gp[lb]
        w100 = count_windows(R100, lb)
        wall = count_windows(R, lb)
        print(f"| {lb} | {n_sub[lb]:,} | {t_gp[lb]:.0f} | {rate:.1f} | {w100:,} | {w100 / rate / 3600:.1f} | {wall:,} | {wall / rate / 3600:.1f} |")
    print()
    print(f"BOCPD build, 100 symbols, full history, k = (5, 21), R = 500: {t_b100:.1f} s (through the cache, {close100.size / t_b100 / 1e6:.3f} Mcells/s)")
    print()

    # 3. BOCPD cells per second
    bo.bocpd(R[:50, :3], k=bo.BOCPD_K)  # compile or load the numba cache
    bo.bocpd_batch(close.to_numpy()[:50, :3])
    t = time.perf_counter()
    bo.bocpd(R, k=bo.BOCPD_K)
    t_b = time.perf_counter() - t
    t = time.perf_counter()
    bo.bocpd_batch(close.to_numpy())
    t_fs = time.perf_counter() - t
    valid = int(np.isfinite(R).sum())
    k_ref = 3
    x_ref = R[:, :k_ref]
    t = time.perf_counter()
    for j in range(k_ref):
        bocpd_reference(x_ref[:, j], 1 / 250, 0.0, 1.0, 1.0, 1e-4, 500, bo.BOCPD_K)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    bo.bocpd(x_ref, k=bo.BOCPD_K)
    t_kit_small = time.perf_counter() - t
    print("BOCPD (R = 500, k = (5, 21)):")
    print()
    print("| case | cells | seconds | Mcells/s | kit speed-up |")
    print("|---|---|---|---|---|")
    print(f"| kit, whole store, returns (`bocpd`) | {R.size:,} ({valid:,} non-NaN) | {t_b:.1f} | {R.size / t_b / 1e6:.3f} | - |")
    print(f"| kit, whole store, closes (`bocpd` feature set) | {R.size:,} | {t_fs:.1f} | {R.size / t_fs / 1e6:.3f} | - |")
    print(f"| kit, {k_ref} symbols | {x_ref.size:,} | {t_kit_small:.2f} | {x_ref.size / t_kit_small / 1e6:.3f} | {t_ref / t_kit_small:.0f}x |")
    print(f"| numpy reference (tests), {k_ref} symbols | {x_ref.size:,} | {t_ref:.1f} | {x_ref.size / t_ref / 1e6:.4f} | 1x |")
    print()
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
