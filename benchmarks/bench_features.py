"""Feature kernels on the whole committed store against the pandas reference, in one process.

Prints a table: the ``dmn`` and ``ldtm`` feature sets (numba, after compilation; best of 5) against
the plain pandas implementations in tests/pandas_reference.py (best of 2), their cells per second,
and a plain numpy copy of the same input and output arrays (the memory-bandwidth floor).

    .venv/bin/python benchmarks/bench_features.py
"""

import _common  # noqa: I001  (first: pins the threads before numpy, numba and torch load)
import time

import numpy as np

from kit import data
from kit.features import kernels
from tests import pandas_reference as ref

FIELDS = ("open", "high", "low", "close", "volume")


def best(fn, repeat):
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    _common.header("feature sets on the whole store: numba kernels against pandas")
    prices, _ = data.load_prices()
    frames = data.wide_fields(prices, FIELDS)
    arrays = [np.ascontiguousarray(frames[f].to_numpy()) for f in FIELDS]
    close = arrays[3]
    T, N = close.shape
    cells = T * N
    kernels.dmn_batch(close[:300, :4])
    kernels.ldtm_batch(*[a[:300, :4] for a in arrays])  # compile (or load from cache)
    rows = []
    for name, fast, slow, n_in, n_out in (
        ("dmn", lambda: kernels.dmn_batch(close), lambda: ref.dmn_features(frames["close"]), 1, 8),
        ("ldtm", lambda: kernels.ldtm_batch(*arrays), lambda: ref.ldtm_features(*(frames[f] for f in FIELDS)), 5, 11),
    ):
        with _common.case(name) as c:
            t_fast = best(fast, 5)
            t_slow = best(slow, 2)
            src = [np.empty((T, N)) for _ in range(n_in)]
            dst = np.empty((T, N, n_out))
            t_copy = best(lambda: ([np.copyto(s, close) for s in src], np.copyto(dst, 0.0)), 5)  # noqa: B023
        if c["ok"]:
            rows.append((name, t_slow, t_fast, t_slow / t_fast, cells / t_fast / 1e6, t_copy, t_fast / t_copy))
    print(f"store: {T} days x {N} symbols = {cells:,} cells")
    print()
    print("| set | pandas s | kit s | speed-up | kit Mcells/s | numpy copy s | kit / copy |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.1f}x | {r[4]:.1f} | {r[5]:.4f} | {r[6]:.0f}x |")


if __name__ == "__main__":
    main()
