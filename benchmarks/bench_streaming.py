"""Streaming update latency for 10,000 symbols per bar (p50 and p99 over 500 bars), against a plain
numpy copy of one bar's input and output arrays in the same process.

    .venv/bin/python benchmarks/bench_streaming.py
"""

import _common  # noqa: I001  (first: pins the threads before numpy, numba and torch load)
import time

import numpy as np
import pandas as pd

from kit.features import StreamingFeatures

N = 10_000
WARM = 300
BARS = 500


def main():
    rng = np.random.default_rng(0)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (WARM + BARS, N)), axis=0))
    noise = np.abs(rng.normal(0, 0.01, close.shape))
    bars = {"open": close * (1 + rng.normal(0, 0.003, close.shape)), "high": close * (1 + noise), "low": close * (1 - noise), "close": close, "volume": rng.integers(1_000, 100_000, close.shape).astype(float)}
    dates = pd.bdate_range("2000-01-03", periods=WARM + BARS)
    cols = [f"S{j:05d}" for j in range(N)]
    _common.header("streaming feature update latency, 10,000 symbols per bar")
    print(f"{N:,} symbols per bar, {BARS} timed bars after {WARM} warm-up bars")
    print()
    print("| feature sets | p50 ms | p99 ms | max ms | numpy copy p50 ms |")
    print("|---|---|---|---|---|")
    for sets in (("dmn",), ("ldtm",), ("dmn", "ldtm")):
        with _common.case("+".join(sets)) as c:
            lat, lat_copy = _measure(sets, bars, dates, cols)
        if c["ok"]:
            print(f"| {'+'.join(sets)} | {np.percentile(lat, 50):.3f} | {np.percentile(lat, 99):.3f} | {lat.max():.3f} | {np.percentile(np.array(lat_copy) * 1e3, 50):.3f} |")


def _measure(sets, bars, dates, cols):
    """Per-bar update latencies (ms) of one combination of feature sets, and of the numpy copy."""
    sf = StreamingFeatures(sets)
    sf.warm_up({f: pd.DataFrame(v[:WARM], index=dates[:WARM], columns=cols) for f, v in bars.items()})
    lat, lat_copy = [], []
    n_out = len(sf.names)
    out_buf = np.empty((N, n_out))
    for t in range(WARM, WARM + BARS):
        fields = {f: bars[f][t] for f in sf.fields}
        t0 = time.perf_counter()
        sf.update_arrays(date=dates[t], **fields)
        lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for v in fields.values():
            v.copy()
        out_buf.fill(0.0)
        lat_copy.append(time.perf_counter() - t0)
    return np.array(lat) * 1e3, lat_copy


if __name__ == "__main__":
    main()
