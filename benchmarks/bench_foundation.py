"""Inference cost per symbol-day of the foundation-model adapters (kit.models.foundation), on the CPU,
against the kit's per-ticker LSTM (LDTM) measured in the same process.

No weights are downloaded: every model here has RANDOM weights. Compute cost does not depend on the
weight values, so a randomly initialised model of a published architecture costs what the
published checkpoint costs; the forecasts themselves are meaningless.

Rows
----
- reference: :class:`kit.models.LDTMForecaster` (seed 003 defaults: 2 layers, hidden 128, 30-day
  window of 11 features), batch of N windows (:func:`kit.training.predict_forecasts` does the same).
- ``ChronosBoltAdapter.tiny()`` and ``TimesFMAdapter.tiny()``: the test models (a few thousand
  parameters, context 64: longer contexts are cut to 64).
- with ``--full-size``: random models of the published architectures, at context 512 (the
  walk-forward default): Chronos-Bolt small (T5 d_model 512, d_ff 2048, 6 + 6 layers, 8 heads,
  patches of 16; about 48M parameters) and TimesFM 2.5 200M (``TimesFm2_5Config()`` defaults; flip
  invariance on, so two passes per forecast).

One symbol-day is one forecast of horizons 1, 5, 21 (three quantiles each) for one symbol at one
decision date: ``ms per symbol-day = median wall time of adapter.forecast on N contexts / N``.

Threads: ``BENCH_THREADS`` (default 1) is passed to ``torch.set_num_threads``; the load average is
printed before and after (other processes on the 2 cores distort the timings).

Run: ``BENCH_THREADS=1 python benchmarks/bench_foundation.py [--n 256] [--repeats 7] [--full-size]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.models import LDTMConfig, LDTMForecaster  # noqa: E402

BENCH_THREADS = int(os.environ.get("BENCH_THREADS", "1"))

CHRONOS_BOLT_SMALL = {
    "d_model": 512, "d_ff": 2048, "d_kv": 64, "num_heads": 8, "num_layers": 6, "num_decoder_layers": 6,
    "dropout_rate": 0.1, "initializer_factor": 0.05,
    "context_length": 2048, "prediction_length": 64, "input_patch_size": 16, "input_patch_stride": 16,
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernels)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="symbols (contexts) per call")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--context", type=int, default=512, help="closes per context")
    ap.add_argument("--full-size", action="store_true", help="also time random models of the published architectures")
    args = ap.parse_args()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(BENCH_THREADS)
    try:
        run(args)
    finally:  # benchmarks/run.py runs every benchmark in one process: leave the thread count as found
        torch.set_num_threads(threads_before)


def run(args):
    try:
        from kit.models import foundation as F

        F.ChronosBoltAdapter.tiny_config()
    except ImportError as exc:
        print(f"skipped: the [foundation] extra is not installed ({exc})")
        return
    import chronos
    import transformers

    load0 = os.getloadavg()
    print("# foundation-model inference cost, CPU, RANDOM weights (no checkpoint downloaded)")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, chronos-forecasting {chronos.__version__}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch threads {torch.get_num_threads()} "
        f"(BENCH_THREADS={BENCH_THREADS}); load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    print(f"N = {args.n} symbols per call, context {args.context} closes, horizons 1, 5, 21, quantiles 0.1/0.5/0.9, median of {args.repeats} calls")
    print()

    rng = np.random.default_rng(0)
    ctx = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (args.n, args.context)), axis=1))

    torch.manual_seed(0)
    ldtm = LDTMForecaster(LDTMConfig()).eval()
    x = torch.from_numpy(rng.normal(size=(args.n, 30, 11)).astype(np.float32))

    def run_ldtm():
        with torch.no_grad():
            ldtm(x)

    ref = median_seconds(run_ldtm, args.repeats) / args.n
    rows = [("LDTM (2 x 128 LSTM, 30-day window), reference", sum(p.numel() for p in ldtm.parameters()), 30, ref)]

    models = [
        ("Chronos-Bolt tiny random (test model)", lambda: F.ChronosBoltAdapter.tiny(0, batch_size=args.n)),
        ("TimesFM 2.5 tiny random (test model)", lambda: F.TimesFMAdapter.tiny(0, batch_size=args.n)),
    ]
    if args.full_size:
        models += [
            ("Chronos-Bolt small architecture, random weights", lambda: F.ChronosBoltAdapter.tiny(0, batch_size=args.n, **CHRONOS_BOLT_SMALL)),
            ("TimesFM 2.5 200M architecture, random weights", lambda: F.TimesFMAdapter(F.TimesFMAdapter._build(transformers.TimesFm2_5Config()), source="random", batch_size=args.n)),
        ]
    for name, build in models:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            a = build()
        used = min(args.context, a.max_context)
        if isinstance(a, F.TimesFMAdapter):
            used = used // a.min_context * a.min_context
        reps = args.repeats if a.n_parameters < 1e6 else max(2, args.repeats // 3)
        sec = median_seconds(lambda a=a: a.forecast(ctx), reps) / args.n
        rows.append((name, a.n_parameters, used, sec))
        del a

    print("| model | parameters | closes read | ms per symbol-day | / LDTM |")
    print("|---|---:|---:|---:|---:|")
    for name, n_par, used, sec in rows:
        print(f"| {name} | {n_par:,} | {used} | {sec * 1e3:.3f} | {sec / ref:.1f} |")
    print()
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (other processes on the cores distort the timings)")
    print(
        "A walk-forward forecasts every symbol on every validation and test date once (zero-shot): "
        "500 symbols x 252 days = 126,000 symbol-days a year of test data."
    )


if __name__ == "__main__":
    main()
