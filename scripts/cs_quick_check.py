"""Quick gross check (not the report): monthly cross-sectional momentum vs LambdaMART decile books.

Universe: the 100 most liquid symbols as of 2000-12-29 (kit.data.load_universe), data 2000-2021,
test from 2011 (yearly retraining). Daily book return ``sum_i w_{t,i} r_{t+1,i}``, 0 costs.
Run: PYTHONPATH=. python scripts/cs_quick_check.py [n_threads]
"""

import json
import os
import sys
import time

import numpy as np
import pandas as pd

from kit import cross_sectional as cs
from kit import data, factors, metrics, trees

n_threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
load0 = os.getloadavg()
t_all = time.perf_counter()
prices, _, symbols = data.load_universe(n_symbols=100, universe_as_of="2000-12-29", start="2000-01-01", end="2021-12-31")
close = data.to_wide(prices, "close")
r = close.pct_change(fill_method=None)
test_start = pd.Timestamp("2011-01-03")


def book_returns(w: pd.DataFrame, start) -> pd.Series:
    nxt = r.shift(-1).fillna(0.0)  # r_{t+1}; a missing next return counts 0
    daily = (w * nxt).sum(axis=1).shift(1).fillna(0.0)  # earned on t+1
    return daily[daily.index > start]


out = {"n_symbols": len(symbols), "dates": [str(close.index[0].date()), str(close.index[-1].date())], "n_threads": n_threads}
rows = {}
t0 = time.perf_counter()
bench = {
    "cs_momentum_ew": cs.cs_momentum_weights(close),
    "cs_momentum_vol": cs.cs_momentum_weights(close, vol_scale=True),
    "cs_macd_ew": cs.cs_macd_weights(close),
}
out["seconds_benchmarks"] = round(time.perf_counter() - t0, 2)
fits = {}
for name, objective in (("lambdamart", "lambdarank"), ("lgbm_regression", "regression")):
    t0 = time.perf_counter()
    res = trees.walk_forward_ranker(close, objective=objective, test_start=test_start, n_threads=n_threads, seed=0)
    out[f"seconds_{name}"] = round(time.perf_counter() - t0, 2)
    out[f"best_iterations_{name}"] = res.folds["best_iteration"].tolist()
    bench[name] = res.weights
    fits[name] = res
first = bench["lambdamart"].index[(bench["lambdamart"].abs().sum(axis=1) > 0).to_numpy()][0]
out["evaluation_start"] = str(first.date())
for name, w in bench.items():
    d = book_returns(w, first)
    rows[name] = {
        "sharpe": round(metrics.sharpe_ratio(d), 3),
        "ann_return": round(float(d.mean() * 252), 4),
        "ann_vol": round(float(d.std() * np.sqrt(252)), 4),
        "days": len(d),
        "mean_gross": round(float(w.loc[w.index > first].abs().sum(axis=1).mean()), 3),
        "max_abs_net": round(float(w.loc[w.index > first].sum(axis=1).abs().max()), 4),
    }
out["strategies"] = rows
t0 = time.perf_counter()
mom = cs.momentum_12_1(close)
reb = cs.month_end_dates(close.index)
mom_m = mom.where(pd.Series(close.index.isin(reb), index=close.index), axis=0)
mom_m = mom_m[mom_m.index >= first].reindex(close.index)
fr = {}
for name, scores in (("momentum_12_1", mom_m), ("lambdamart", fits["lambdamart"].scores), ("lgbm_regression", fits["lgbm_regression"].scores)):
    rep = factors.factor_report(scores, close, horizons=(1, 5, 21), n_quantiles=10)
    fr[name] = {k: round(float(v), 4) for k, v in rep["summary"].items()}
out["factors"] = fr
out["seconds_factors"] = round(time.perf_counter() - t0, 2)
out["seconds_total"] = round(time.perf_counter() - t_all, 2)
out["loadavg_start"] = [round(x, 2) for x in load0]
out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
print(json.dumps(out, indent=1))
