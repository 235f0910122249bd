"""Universe training: K = 100 per-ticker LDTM models from one call, by each path of
:func:`kit.training.batched.train_universe`, against a matrix-product reference measured in the same run.

Rows (the same data, seeds and number of epochs for each):

(a) ``loop``: K ordinary :class:`kit.models.ldtm.LDTMForecaster` s, one :class:`kit.training.Trainer` fit
    each; torch's fused CPU ``nn.LSTM`` (oneDNN);
(b) ``batched``: the K models stacked (:class:`kit.training.batched.BatchedLDTM`), hand-written
    back-propagation through time, eager;
(c) ``batched, autograd``: the same stacked forward with ordinary autograd (the form that
    ``torch.compile`` traces), eager;
(d) ``batched, torch.compile``: (c) compiled by inductor (its on-disk caches switched off, so that the
    compilation is measured). Skipped when the first call takes over 5 minutes.

Each path is called twice: the first call pays one-time costs (oneDNN kernel generation, first touch
of newly mapped memory, compilation), the second is the steady state a long retrain sees, and the
throughput columns use it. Both calls must give bitwise identical models (printed).

Data: the committed S&P 500 store (:func:`kit.data.load_prices`); the first K symbols (alphabetically)
present on every trading day of the store; the LDTM features (:func:`kit.features.feature_set`
``"ldtm"``), targets ``forward_returns(close, (1, 5, 21))``, 30-day windows (:func:`kit.features.make_samples`)
over the last ``DAYS`` trading days; per ticker the last ``N_VAL`` windows validate and the
``N_TRAIN`` windows before them (after a 21-day embargo) train. Default :class:`kit.models.LDTMConfig`
(2 layers, hidden 128, 3 horizons), batch 128.

FLOPs (multiply-add = 2): one LDTM forward on one window costs
``F_fwd = sum_layers 2 L 4H (I_l + H) + n_h (2 * 64 H + 2 * 64)`` (:func:`kit.training.batched.ldtm_forward_flops`;
12.18 MFLOP for L = 30, F = 11, H = 128); a training step costs ``3 F_fwd`` per window (backward =
gradients for inputs and weights, each about one forward); validation ``F_fwd`` per window. Achieved
GFLOP/s = ``(3 F_fwd * train windows + F_fwd * val windows) * epochs / wall seconds``; element-wise work
is not counted.

Run: ``python benchmarks/bench_universe_training.py [--k 100] [--epochs 1] [--n-train 768]``.
"""

from __future__ import annotations  # noqa: I001

import _common  # first: pins the threads before numpy, numba and torch load
import argparse
import os
import signal
import time

os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")  # measure compilation, not a disk-cache hit
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kit import data, features  # noqa: E402
from kit.models import LDTMConfig  # noqa: E402
from kit.training import TrainConfig  # noqa: E402
from kit.training.batched import AUTO_CPU_PATH, clear_workspace, ldtm_forward_flops, train_universe  # noqa: E402

LOOKBACK = 30
HORIZONS = (1, 5, 21)
COMPILE_LIMIT_S = 300


def full_history_symbols(k: int) -> tuple[list[str], int]:
    """The first k symbols (sorted) with a row on every date of the store; and the store's day count."""
    import pyarrow.parquet as pq

    tab = pq.read_table(data.default_store(), columns=["symbol", "date"]).to_pandas()
    n_days = tab["date"].nunique()
    counts = tab.groupby("symbol")["date"].nunique()
    full = sorted(counts[counts == n_days].index.astype(str))
    if len(full) < k:
        raise SystemExit(f"only {len(full)} symbols have full history, {k} requested")
    return full[:k], n_days


def build_datasets(symbols, days: int, n_train: int, n_val: int):
    cal = data.trading_calendar()
    prices, _ = data.load_prices(symbols=symbols, start=cal[-(days + 60)])  # 60 days of feature warm-up
    frames = data.wide_fields(prices)
    fa = features.feature_set("ldtm", frames)
    fwd = features.forward_returns(frames["close"], HORIZONS)
    T = len(fa.index)
    datasets = []
    for j in range(len(symbols)):
        X, y, where = features.make_samples(
            fa.values[:, j : j + 1], fwd.values[:, j : j + 1], LOOKBACK, start=T - days
        )
        dates = where[:, 0]
        val_start = dates.max() - n_val + 1
        tr = dates < val_start - max(HORIZONS)  # embargo: no training target reaches the validation block
        va = dates >= val_start
        Xtr, ytr = X[tr][-n_train:], y[tr][-n_train:]
        if len(Xtr) < n_train:
            raise SystemExit(f"{symbols[j]}: only {len(Xtr)} training windows in the last {days} days")
        datasets.append(
            (
                Xtr.astype(np.float32),
                ytr.astype(np.float32),
                X[va].astype(np.float32),
                y[va].astype(np.float32),
            )
        )
    return datasets


def best_of(f, repeat: int = 5) -> float:
    f()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def matmul_reference(k: int, batch: int, hidden: int) -> tuple[float, float]:
    """fp32 GFLOP/s of a 1024^3 matmul and of the LSTM's recurrent-step bmm (K, B, H) @ (K, H, 4H)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    mm = 2 * 1024**3 / best_of(lambda: a @ b) / 1e9
    h, w = torch.randn(k, batch, hidden), torch.randn(k, hidden, 4 * hidden)
    bmm = 2 * k * batch * hidden * 4 * hidden / best_of(lambda: torch.bmm(h, w)) / 1e9
    return mm, bmm


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=100, help="tickers (models)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per path (equal for every path)")
    ap.add_argument("--days", type=int, default=1000, help="last trading days per ticker")
    ap.add_argument("--n-train", type=int, default=768, help="training windows per ticker")
    ap.add_argument("--n-val", type=int, default=128, help="validation windows per ticker")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    ap.add_argument("--no-autograd", action="store_true", help="skip the eager autograd row")
    args = ap.parse_args()

    _common.header("universe training of K per-ticker LDTM models: loop, batched and compiled paths")
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    symbols, n_days = full_history_symbols(args.k)
    datasets = build_datasets(symbols, args.days, args.n_train, args.n_val)
    cfg = LDTMConfig()
    tc = TrainConfig(epochs=args.epochs, batch_size=128, patience=10**6, device="cpu", seed=0)
    n_tr = sum(len(d[0]) for d in datasets)
    n_va = sum(len(d[2]) for d in datasets)
    f_fwd = ldtm_forward_flops(cfg, LOOKBACK)
    flop = (3 * f_fwd * n_tr + f_fwd * n_va) * args.epochs
    print(
        f"K={args.k} tickers with full history ({symbols[0]} .. {symbols[-1]}), last {args.days} days: "
        f"{args.n_train} train + {len(datasets[0][2])} val windows of {LOOKBACK} x {cfg.n_features} per ticker "
        f"(a subset of the ~{args.days - LOOKBACK - 21} available, to keep the run under 10 minutes); "
        f"LDTMConfig() hidden {cfg.hidden_size} x {cfg.num_layers} layers; batch 128; {args.epochs} epoch(s) per path"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; load average at start {load0[0]:.2f}"
    )
    print(
        f"FLOPs: forward {f_fwd / 1e6:.2f} MFLOP per window; {flop / 1e12:.3f} TFLOP per path ({n_tr} train windows x 3 + {n_va} val windows, x {args.epochs} epoch(s))"
    )
    mm, bmm = matmul_reference(args.k, 128, cfg.hidden_size)
    print(
        f"reference fp32 matmul: 1024^3 {mm:.1f} GFLOP/s; recurrent-step bmm ({args.k}, 128, 128) @ ({args.k}, 128, 512) {bmm:.1f} GFLOP/s"
    )

    rows = []
    fits = {}

    def timed(**kw):
        t, c = time.perf_counter(), time.process_time()
        fit = train_universe(datasets, cfg, tc, **kw)
        sec = time.perf_counter() - t
        # share of the cores this process got: well below 100% means other processes competed
        return fit, sec, (time.process_time() - c) / (sec * torch.get_num_threads())

    def run(label, limit=None, **kw):
        """A first (cold) call, then a second (steady-state) call whose time the table uses: first
        calls pay one-time costs (oneDNN kernel generation, first touch of new memory, compilation)."""
        clear_workspace()
        if limit:
            signal.alarm(limit)
        fit1, cold, u1 = timed(**kw)
        signal.alarm(0)
        fit, sec, u2 = timed(**kw)
        same = all(
            torch.equal(p, q)
            for a, b in zip(fit1.models, fit.models, strict=True)
            for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
        fits[label] = fit
        rows.append((label, cold, sec, n_tr * args.epochs / sec, flop / sec / 1e9, min(u1, u2)))
        print(
            f"  {label}: first call {cold:.1f} s, second call {sec:.1f} s; CPU use {100 * u1:.0f}% / "
            f"{100 * u2:.0f}% of {torch.get_num_threads()} threads; calls bitwise identical: {same}"
        )
        return cold, sec

    with _common.case("(a) loop, fused nn.LSTM"):
        run("(a) loop, fused nn.LSTM", path="loop")
    with _common.case("(b) batched, manual BPTT"):
        run("(b) batched, manual BPTT", path="batched")
    if not args.no_autograd:
        with _common.case("(c) batched, autograd"):
            run("(c) batched, autograd", path="batched", bptt="autograd")
    compile_note = ""
    if not args.no_compile:
        old = signal.signal(signal.SIGALRM, _alarm)
        try:
            first, sec = run(
                "(d) batched, torch.compile", limit=COMPILE_LIMIT_S, path="batched", compile=True
            )
            compile_note = (
                f"torch.compile (inductor caches off): first call {first:.1f} s, second call {sec:.1f} s "
                f"-> compilation ~{first - sec:.0f} s"
            )
        except _Timeout:
            compile_note = f"torch.compile skipped: compilation did not finish within {COMPILE_LIMIT_S} s"
        except Exception as exc:  # noqa: BLE001 - report any compiler failure and go on
            signal.alarm(0)
            compile_note = f"torch.compile skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        finally:
            signal.signal(signal.SIGALRM, old)
        print("  " + compile_note)

    if "(a) loop, fused nn.LSTM" not in fits or "(b) batched, manual BPTT" not in fits:
        print("the loop or batched path ran past its budget: no comparison")
        return
    # agreement of the paths (float32 reassociation only)
    ref = fits["(a) loop, fused nn.LSTM"].models
    diffs = {
        label: max(
            float((p.detach() - q.detach()).abs().max())
            for a, b in zip(ref, f.models, strict=True)
            for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
        for label, f in fits.items()
        if not label.startswith("(a)")
    }

    print()
    print(
        "| path | first call s | second call s | train windows/s | achieved GFLOP/s | % of 1024^3 matmul "
        "| CPU use | max abs weight diff vs (a) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, cold, sec, sps, gf, util in rows:
        d = "-" if label.startswith("(a)") else f"{diffs[label]:.1e}"
        print(
            f"| {label} | {cold:.1f} | {sec:.1f} | {sps:,.0f} | {gf:.1f} | {100 * gf / mm:.0f}% "
            f"| {100 * util:.0f}% | {d} |"
        )
    print(f"| reference: fp32 matmul 1024^3 | | | | {mm:.1f} | 100% | | |")
    print(
        f"| reference: bmm ({args.k},128,128)@({args.k},128,512) | | | | {bmm:.1f} | {100 * bmm / mm:.0f}% | | |"
    )
    if compile_note:
        print(f"\n{compile_note}")

    best = max(rows, key=lambda r: r[3])
    # a full retrain: 500 tickers x every window of the store (20-day feature warm-up), 90% train / 10% val
    s_full = n_days - LOOKBACK - max(HORIZONS) - 20
    per_epoch = 500 * s_full * (0.9 * 3 + 0.1) * f_fwd / (best[4] * 1e9)
    print(
        f"\nfastest: {best[0]} at {best[3]:,.0f} train windows/s ({best[4]:.1f} GFLOP/s). Full 500-ticker retrain "
        f"(whole store, ~{s_full} windows per ticker, 90/10 train/val) at that rate: ~{per_epoch / 60:.0f} min "
        f"per epoch; {20 * per_epoch / 3600:.1f} h for 20 epochs, {100 * per_epoch / 3600:.1f} h for the "
        f"100-epoch maximum of TrainConfig (early stopping usually ends sooner)."
    )
    loop_sps, batched_sps = rows[0][3], rows[1][3]
    faster = "batched" if batched_sps > loop_sps else "loop"
    print(
        f"eager paths: batched/loop throughput = {batched_sps / loop_sps:.2f}; this run measured {faster!r} "
        f"faster; path='auto' on the CPU takes AUTO_CPU_PATH={AUTO_CPU_PATH!r}."
    )
    print(
        f"load average at end {os.getloadavg()[0]:.2f} (other processes on the 2 cores distort the timings); total {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
