"""Backtest of the whole committed store: vectorbt simulation against the numpy reference, in one
process.

The full universe (every symbol of data/sp500_daily_1999_2021.parquet, about 500 x 5,400 days,
symbols entering and leaving), TSMOM positions, per-asset volatility targeting (15%, ex-ante
volatility, gross cap 0.95), 5 bps costs and 2 bps slippage. Times, best of ``REPEAT`` after a
warm-up call (numba compiled or loaded from its cache): ``kit.portfolio.simulate`` (vectorbt
``from_orders`` plus its returns), ``reference_returns`` (plain numpy loop over days),
``vol_scaled_weights`` and the portfolio-level scaling; the largest daily difference between the
two P&Ls. Target: simulate under 3 s on 2 cores.

    .venv/bin/python benchmarks/bench_backtest.py
"""

import _common  # noqa: I001  (first: pins the threads before numpy, numba and torch load)
import time

import numpy as np

from kit import data, features
from kit import portfolio as backtest

REPEAT = 3
COST_BPS = 5.0
SLIPPAGE_BPS = 2.0


def best(fn, repeat=REPEAT):
    out, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        out.append(time.perf_counter() - t)
    return min(out), result


def main():
    _common.header("backtest of the whole store: vectorbt simulate against the numpy reference")
    prices, _, _ = data.load_universe(symbols="all")
    close = data.to_wide(prices, "close")
    T, N = close.shape
    vol = features.ex_ante_vol(features.daily_returns(close))
    pos = backtest.tsmom_positions(close)
    nan = (float("nan"), None)
    t_weights = t_pvol = t_sim = t_ref = nan[0]
    with _common.case("vol_scaled_weights"):
        t_weights, w = best(lambda: backtest.vol_scaled_weights(pos, vol))
    with _common.case("portfolio_vol_scaled_weights"):
        t_pvol, _ = best(lambda: backtest.portfolio_vol_scaled_weights(w, close, 0.15))
    res = ref = None
    with _common.case("simulate"):
        backtest.simulate(close.iloc[:50, :5], w.iloc[:50, :5], COST_BPS, slippage_bps=SLIPPAGE_BPS)  # warm-up (compile)
        t_sim, res = best(lambda: backtest.simulate(close, w, COST_BPS, slippage_bps=SLIPPAGE_BPS))
    with _common.case("reference_returns"):
        t_ref, ref = best(lambda: backtest.reference_returns(close, w, COST_BPS, SLIPPAGE_BPS))
    diff = float(np.abs(res.returns.to_numpy() - ref.to_numpy()).max()) if res is not None and ref is not None else float("nan")
    live = int(pos.notna().sum(axis=1).median())
    print(f"store: {T} days x {N} symbols ({live} live on the median day); costs {COST_BPS} bps, slippage {SLIPPAGE_BPS} bps")
    print()
    print("| step | s | vs reference |")
    print("|---|---|---|")
    print(f"| simulate (vectorbt) | {t_sim:.3f} | {t_sim / t_ref:.1f}x |")
    print(f"| reference_returns (numpy) | {t_ref:.3f} | 1.0x |")
    print(f"| vol_scaled_weights | {t_weights:.3f} | {t_weights / t_ref:.2f}x |")
    print(f"| portfolio_vol_scaled_weights | {t_pvol:.3f} | {t_pvol / t_ref:.2f}x |")
    print()
    print(f"max |simulate - reference| daily return: {diff:.1e}; simulate {'under' if t_sim < 3 else 'OVER'} the 3 s target")


if __name__ == "__main__":
    main()
