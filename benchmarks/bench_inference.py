"""Batch inference for 500 symbols: p50 and p99 latency of torch eager, TorchScript and onnxruntime
for each position model, in one process (ratios to torch eager beside the times).

Two outputs per model: the whole sequence of positions ``(500, 63)`` (what backtests use) and the
live path ``export.LatestPosition`` ``(500,)`` (what the daily step needs: the last position per
symbol; the DMN LSTM then runs its head on one step instead of 63).

    .venv/bin/python benchmarks/bench_inference.py
"""

import _common  # noqa: I001  (first: pins the threads before numpy, numba and torch load)
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kit.models import (
    DeepMomentumLSTM,
    DMNConfig,
    MomentumTransformer,
    TransformerConfig,
    export,  # noqa: E402
)

N_SYMBOLS = 500
RUNS = 200


def latencies(fn, runs=RUNS):
    for _ in range(10):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1e3


def main():
    import onnxruntime as ort

    _common.header("batch inference latency for 500 symbols: torch eager, TorchScript, onnxruntime")
    torch.manual_seed(0)
    print(f"batch of {N_SYMBOLS} symbols x 63 days x 8 features, {RUNS} runs each")
    print()
    print("| model | runtime | p50 ms | p99 ms | p99 / torch eager p99 |")
    print("|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    dmn = DeepMomentumLSTM(DMNConfig(8, 20))
    mt = MomentumTransformer(TransformerConfig(8, 16, 4))
    models = (
        ("DMN LSTM (hidden 20), sequence", dmn),
        ("DMN LSTM (hidden 20), last step", export.LatestPosition(dmn)),
        ("Momentum Transformer (d 16, 4 heads), sequence", mt),
        ("Momentum Transformer (d 16, 4 heads), last step", export.LatestPosition(mt)),
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = _common.BENCH_THREADS
    for name, model in models:
        with _common.case(name) as c:
            model.eval()
            x = export.example_input(model, N_SYMBOLS)
            ts = torch.jit.load(str(export.export_torchscript(model, tmp / "m.pt")))
            sess = ort.InferenceSession(str(export.export_onnx(model, tmp / "m.onnx")), opts, providers=["CPUExecutionProvider"])
            xn = x.numpy()
            with torch.no_grad():
                rows = [
                    ("torch eager", latencies(lambda: model(x))),  # noqa: B023
                    ("TorchScript", latencies(lambda: ts(x))),  # noqa: B023
                ]
            rows.append(("onnxruntime", latencies(lambda: sess.run(None, {"x": xn}))))  # noqa: B023
        if not c["ok"]:
            continue
        base = np.percentile(rows[0][1], 99)
        for runtime, lat in rows:
            p99 = np.percentile(lat, 99)
            print(f"| {name} | {runtime} | {np.percentile(lat, 50):.2f} | {p99:.2f} | {p99 / base:.2f} |")


if __name__ == "__main__":
    main()
