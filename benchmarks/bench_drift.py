"""Calibration of kit.drift: false-positive rates on undrifted synthetic data and detection power for a
planted shift, each over many seeded draws, with Clopper-Pearson 95% intervals. Not a speed benchmark:
the numbers are rates (the time taken is printed for information only).

    .venv/bin/python benchmarks/bench_drift.py [--draws 1000]

Feature drift: 5 features, standard normal with pairwise correlation 0.25 (a common factor), a
training window of 1,000 rows against recent windows of 20, 60 and 250 rows; ``feature_drift`` at its
defaults (KS with Holm across features at 5%, PSI threshold 0.25, 10 bins). Rates per check (any
feature flagged). Power: a mean shift of 0.5 sd in one feature. Then the same undrifted check on
autocorrelated rows (each feature an AR(1) series, phi 0.9 and 0.99, as rolling-window features are),
raw and thinned to every 20th row, to show what the tests' independence assumption costs.

Performance drift: direction calls correct with probability exactly 0.52 (the gate: the least
favourable null) over a 30-day window with 1, 10 and 100 calls a day; absolute percentage errors
exponential with mean exactly 0.05 (the gate's max MAPE; skewed, as such errors are). Power at an
accuracy of 0.48 and a MAPE of 0.06.
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import drift  # noqa: E402

K = 5
FEATURES = [f"f{i}" for i in range(K)]
N_TRAIN = 1000


def rate(k: int, n: int) -> str:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def panel(rng, n: int, shift: float = 0.0, phi: float = 0.0) -> pd.DataFrame:
    z = 0.5 * rng.normal(size=(n, 1)) + math.sqrt(0.75) * rng.normal(size=(n, K))
    if phi:  # stationary AR(1) with unit variance: x[0] = z[0], x[t] = phi x[t-1] + sqrt(1 - phi^2) z[t]
        c = math.sqrt(1 - phi**2)
        z[0] /= c
        z = lfilter([c], [1.0, -phi], z, axis=0)
    df = pd.DataFrame(z, columns=FEATURES)
    df["f0"] += shift
    return df


def feature_rates(rng, draws: int, m: int, shift: float = 0.0, phi: float = 0.0, thin: int = 1):
    ks = psi_any = psi_p = shifted = 0
    psi_values = []
    for _ in range(draws):
        train = panel(rng, N_TRAIN * thin, phi=phi).iloc[::thin]
        recent = panel(rng, m * thin + (200 if phi else 0), shift, phi).iloc[-m * thin:].iloc[::thin]
        r = drift.feature_drift(train, recent)
        ks += bool((r["verdict"] == "drift").any())
        psi_any += bool(r["psi_drift"].any())
        psi_p += bool((drift.holm_adjust(r["psi_p_value"]) < 0.05).any())
        shifted += r.loc["f0", "verdict"] == "drift"
        psi_values.append(r.loc["f1", "psi"])
    return ks, psi_any, psi_p, shifted, float(np.mean(psi_values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    draws = ap.parse_args().draws
    t0 = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; {draws} draws per row; single thread; seeded")
    print()
    print("Feature drift, undrifted iid rows (train 1,000 rows, 5 features):")
    print()
    print("| recent rows | KS+Holm check (verdict) | PSI > 0.25 in any feature | PSI chi2 p-value + Holm < 5% | mean PSI of one feature | (1/n+1/m)(B-1) |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for m in (20, 60, 250):
        ks, pa, pp, _, mean_psi = feature_rates(rng, draws, m)
        print(f"| {m} | {rate(ks, draws)} | {rate(pa, draws)} | {rate(pp, draws)} | {mean_psi:.4f} | {(1 / N_TRAIN + 1 / m) * 9:.4f} |")
    print()
    print("Feature drift, power for a 0.5 sd mean shift in one feature:")
    print()
    print("| recent rows | shifted feature flagged (KS+Holm) | check says drift | PSI > 0.25 in any feature |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(2)
    for m in (20, 60, 250):
        ks, pa, _, sh, _ = feature_rates(rng, draws, m, shift=0.5)
        print(f"| {m} | {rate(sh, draws)} | {rate(ks, draws)} | {rate(pa, draws)} |")
    print()
    print("Feature drift, undrifted AR(1) rows (recent 60 rows; thinned = every 20th row of 20x longer windows):")
    print()
    print("| phi | rows | KS+Holm check (verdict) | PSI > 0.25 in any feature |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(3)
    n_ar = draws
    for phi in (0.9, 0.99):
        for thin in (1, 20):
            ks, pa, _, _, _ = feature_rates(rng, n_ar, 60, phi=phi, thin=thin)
            print(f"| {phi} | {'raw' if thin == 1 else 'thinned'} | {rate(ks, n_ar)} | {rate(pa, n_ar)} |")
    print()
    print("Performance drift (30-day window, alpha 5%):")
    print()
    print("| calls a day | accuracy 0.52 (null): drift | accuracy 0.48: drift | MAPE 0.05 (null): drift | MAPE 0.06: drift |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(4)
    days = pd.bdate_range("2024-01-02", periods=31)
    for per_day in (1, 10, 100):
        n = 30 * per_day
        counts = []
        for acc, mape in ((0.52, 0.05), (0.48, 0.06)):
            a = b = 0
            for _ in range(draws):
                o = pd.DataFrame({"model_id": 1, "label": "m", "run_date": np.repeat(days[:-1], per_day), "target_date": np.repeat(days[1:], per_day),
                                  "direction_correct": pd.array(rng.random(n) < acc, dtype="boolean"), "pct_error": rng.exponential(mape, n)})
                r = drift.performance_drift(o).set_index("check")["verdict"]
                a += r["direction_accuracy"] == "drift"
                b += r["mape"] == "drift"
            counts.append((a, b))
        (a0, b0), (a1, b1) = counts
        print(f"| {per_day} | {rate(a0, draws)} | {rate(a1, draws)} | {rate(b0, draws)} | {rate(b1, draws)} |")
    print()
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
