"""Calibration of kit.analytics.drift: false-positive rates on undrifted synthetic data and detection power for a
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
accuracy of 0.48 and a MAPE of 0.06. Then calls correlated within a day (one market factor, latent
correlation 0.3): the day-clustered test the loop uses against the call-level binomial test.

The daily loop's own feature check (``--only panel``): simulated price panels of 20 stocks over 1,260
days, undrifted by construction (random walks with constant volatility; independent, or with a
common market factor carrying about a third of each stock's variance), the DMN features computed by
``kit.features.feature_set``, sampled by ``kit.analytics.drift.window_samples`` (training window up
to 100 days before the day, one cross-section every 21 days; the recent sample the day's
cross-section) and checked by ``feature_drift``: with the loop's defaults (cross-sections demeaned,
KS and PSI) and without each of them; then a 63-day recent window (3 cross-sections, and every day)
to show what overlapping rows cost. Power: all stocks trending together, and stocks drifting apart.

    .venv/bin/python benchmarks/bench_drift.py [--draws 1000] [--only all|iid|panel]
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

from kit.analytics import drift  # noqa: E402
from kit.features import feature_set  # noqa: E402

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


def price_panel(rng, T: int = 1260, N: int = 20, factor: bool = False, trend: float = 0.0, trend_days: int = 100) -> pd.DataFrame:
    """(T, N) closes of random walks: daily log returns N(0, 1.5%) plus, with ``factor``, a common
    N(0, 1%) market return (about 31% of the variance); ``trend`` added to every return of the last
    ``trend_days`` days."""
    r = rng.normal(0.0, 0.015, (T, N))
    if factor:
        r += rng.normal(0.0, 0.01, (T, 1))
    if trend:
        r[-trend_days:] += trend
    return pd.DataFrame(50.0 * np.exp(np.cumsum(r, axis=0)), index=pd.bdate_range("2010-01-04", periods=T), columns=[f"S{i:02d}" for i in range(N)])


def loop_feature_checks(close: pd.DataFrame, settings, *, lag: int = 100) -> list[bool]:
    """The daily loop's feature check (the calls of kit.live.loop._drift) on one panel, once per
    ``(demean, require_psi, recent_days, stride)`` in ``settings``: True where it says drift."""
    fa = feature_set("dmn", close)
    out = []
    for demean, require_psi, recent_days, stride in settings:
        train, recent = drift.window_samples(fa, (close.index[0], close.index[-1 - lag]), close.index[-1], recent_days=recent_days,
                                             stride=stride, demean=demean)
        r = drift.feature_drift(train, recent, require_psi=require_psi)
        out.append(bool((r["verdict"] == "drift").any()))
    return out


def half_trend_panel(rng, trend: float = 0.006, days: int = 100) -> pd.DataFrame:
    """Independent random walks; over the last ``days`` days half the stocks gain ``trend`` a day and
    half lose it (the stocks drift apart: the cross-section's spread widens, its mean stays)."""
    close = price_panel(rng)
    r = np.log(close).diff().fillna(0.0).to_numpy().copy()
    n = r.shape[1] // 2
    r[-days:, :n] += trend
    r[-days:, n:] -= trend
    return pd.DataFrame(50.0 * np.exp(np.cumsum(r, axis=0)), index=close.index, columns=close.columns)


def panel_section(draws: int) -> None:
    print("The daily loop's feature check on simulated price panels (20 stocks, the 8 DMN features, training window up to 100 days")
    print("before the day, one cross-section every 21 days; the recent sample is the day's cross-section; KS + Holm at 5%, PSI 0.25).")
    print("demean: each date's cross-sectional mean removed (the loop's default); require_psi: KS and PSI must both say so (default).")
    print()
    grid = [(True, True, 21, 21), (True, False, 21, 21), (False, True, 21, 21), (False, False, 21, 21)]
    names = ["demean, KS and PSI (defaults)", "demean, KS only", "levels, KS and PSI", "levels, KS only"]
    print("| panel | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    cases = [("undrifted: independent stocks", lambda r: price_panel(r), draws),
             ("undrifted: one market factor", lambda r: price_panel(r, factor=True), draws),
             ("power: all stocks trend +0.3% a day (100 days)", lambda r: price_panel(r, trend=0.003), max(100, draws // 5)),
             ("power: half +0.6%, half -0.6% a day (100 days)", half_trend_panel, max(100, draws // 5))]
    for k, (label, make, n) in enumerate(cases):
        rng = np.random.default_rng(100 + k)
        hits = np.zeros(len(grid), dtype=int)
        for _ in range(n):
            hits += np.array(loop_feature_checks(make(rng), grid))
        print(f"| {label} ({n} draws) | " + " | ".join(rate(int(h), n) for h in hits) + " |")
    print()
    print("Thinning: the same undrifted independent panels with a 63-day recent window, levels, KS only:")
    print()
    print("| recent sample | rate |")
    print("|---|---|")
    n = max(100, draws // 5)
    for stride, label in ((21, "3 cross-sections, 21 days apart"), (1, "63 cross-sections (every day)")):
        rng = np.random.default_rng(150 + stride)
        hits = sum(loop_feature_checks(price_panel(rng), [(False, False, 63, stride)])[0] for _ in range(n))
        print(f"| {label} ({n} draws) | {rate(hits, n)} |")
    print()


def correlated_calls_section(draws: int) -> None:
    print("Performance drift with calls correlated within a day (100 calls a day, 30 days, one market factor with latent correlation 0.3,")
    print("each call right with probability exactly 0.52): the loop's day-clustered test and the call-level binomial test")
    print()
    print("| test | false-positive rate at the gate |")
    print("|---|---|")
    rng = np.random.default_rng(300)
    days = pd.bdate_range("2024-01-02", periods=31)
    z = stats.norm.ppf(1 - 0.52)
    clustered = binom = 0
    for _ in range(draws):
        latent = math.sqrt(0.3) * rng.normal(size=(30, 1)) + math.sqrt(0.7) * rng.normal(size=(30, 100))
        correct = (latent > z).ravel()
        o = pd.DataFrame({"model_id": 1, "label": "m", "run_date": np.repeat(days[:-1], 100), "target_date": np.repeat(days[1:], 100),
                          "direction_correct": pd.array(correct, dtype="boolean"), "pct_error": np.nan})
        r = drift.performance_drift(o).set_index("check")["verdict"]
        clustered += r["direction_accuracy"] == "drift"
        binom += stats.binomtest(int(correct.sum()), correct.size, 0.52, alternative="less").pvalue < 0.05
    print(f"| day-clustered t-test (kit.analytics.drift.performance_drift) | {rate(clustered, draws)} |")
    print(f"| binomial test on the 3,000 calls as if independent | {rate(binom, draws)} |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--only", choices=["all", "iid", "panel"], default="all")
    args = ap.parse_args()
    draws = args.draws
    t0 = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; {draws} draws per row; single thread; seeded")
    print()
    if args.only in ("all", "panel"):
        panel_section(draws)
        correlated_calls_section(draws)
    if args.only == "panel":
        print(f"({time.perf_counter() - t0:.0f} s)")
        return
    print("Feature drift, undrifted iid rows (train 1,000 rows, 5 features):")
    print()
    print("| recent rows | KS+Holm check (verdict) | PSI > 0.25 in any feature | PSI chi2 p-value + Holm < 5% | mean PSI of one feature | "
          "bins B | (1/n+1/m)(B-1) |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for m in (20, 60, 250):
        ks, pa, pp, _, mean_psi = feature_rates(rng, draws, m)
        b = max(2, min(10, m // 5))  # feature_drift's bins: at least 5 recent values a bin
        print(f"| {m} | {rate(ks, draws)} | {rate(pa, draws)} | {rate(pp, draws)} | {mean_psi:.4f} | {b} | {(1 / N_TRAIN + 1 / m) * (b - 1):.4f} |")
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
