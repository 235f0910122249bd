import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import backtest

IDX = pd.bdate_range("2020-01-01", periods=6)


def test_vol_scaled_weights_hand_case():
    pos = pd.DataFrame({"A": [1.0, 0.5, np.nan], "B": [-1.0, 1.0, 1.0]}, index=IDX[:3])
    vol = pd.DataFrame({"A": [0.30, 0.15, 0.2], "B": [0.15, 0.60, 0.3]}, index=IDX[:3])
    w = backtest.vol_scaled_weights(pos, vol, target_vol=0.15, max_gross=10)
    # day 0: A 1*0.15/0.30/2 = 0.25, B -1*0.15/0.15/2 = -0.5
    # day 1: A 0.5*0.15/0.15/2 = 0.25, B 1*0.15/0.6/2 = 0.125
    # day 2: only B live: 1*0.15/0.3/1 = 0.5, A not live -> 0
    np.testing.assert_allclose(w.to_numpy(), [[0.25, -0.5], [0.25, 0.125], [0.0, 0.5]])


def test_gross_cap_scales_the_whole_day():
    pos = pd.DataFrame({"A": [1.0], "B": [1.0]}, index=IDX[:1])
    vol = pd.DataFrame({"A": [0.05], "B": [0.10]}, index=IDX[:1])  # uncapped weights 1.5 and 0.75
    w = backtest.vol_scaled_weights(pos, vol, max_gross=0.9)
    assert w.abs().sum(axis=1).iloc[0] == pytest.approx(0.9)
    assert w["A"].iloc[0] / w["B"].iloc[0] == pytest.approx(2.0)


def test_weights_reject_bad_input():
    pos = pd.DataFrame({"A": [1.5]}, index=IDX[:1])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        backtest.vol_scaled_weights(pos, pos * 0 + 0.2)
    with pytest.raises(ValueError, match="target_vol"):
        backtest.vol_scaled_weights(pos.clip(-1, 1), pos * 0 + 0.2, target_vol=0)


def test_simulate_hand_computed_two_days():
    close = pd.DataFrame({"A": [100.0, 110.0], "B": [50.0, 45.0]}, index=IDX[:2])
    w = pd.DataFrame({"A": [0.5, 0.5], "B": [-0.4, -0.4]}, index=IDX[:2])
    res = backtest.simulate(close, w, cost_bps=10)
    # day 0: trade 0.9 of equity, fee 0.0009 -> return -0.0009
    # day 1 before rebalance: 0.5*1.1 - 0.4*0.9 + cash(1 - 0.5 + 0.4 - 0.0009) = 0.55 - 0.36 + 0.8991 = 1.0891
    v1 = 1.0891
    # rebalance: A 0.005 shares->0.5*v1/110; B short -0.008 -> -0.4*v1/45
    traded = abs(0.5 * v1 / 110 - 0.005) * 110 + abs(-0.4 * v1 / 45 + 0.008) * 45
    v1_after = v1 - 0.001 * traded
    np.testing.assert_allclose(res.returns.to_numpy(), [-0.0009, v1_after / 0.9991 - 1], rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.0, 1.0, 5.0, 20.0]), st.floats(0.1, 0.95))
def test_simulate_equals_numpy_reference(seed, cost_bps, gross):
    rng = np.random.default_rng(seed)
    T, N = 60, 4
    idx = pd.bdate_range("2020-01-01", periods=T)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), 0)), index=idx, columns=list("ABCD"))
    raw = rng.uniform(-1, 1, (T, N))
    w = pd.DataFrame(raw / np.abs(raw).sum(axis=1, keepdims=True) * gross, index=idx, columns=close.columns)
    got = backtest.simulate(close, w, cost_bps).returns
    ref = backtest.reference_returns(close, w, cost_bps)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-10, rtol=0)


def test_simulate_rejects_weight_without_price():
    close = pd.DataFrame({"A": [np.nan, 10.0], "B": [5.0, 5.0]}, index=IDX[:2])
    w = pd.DataFrame({"A": [0.1, 0.1], "B": [0.0, 0.0]}, index=IDX[:2])
    with pytest.raises(ValueError, match="A.*close is NaN"):
        backtest.simulate(close, w)
    with pytest.raises(ValueError, match="cost_bps"):
        backtest.simulate(close, w.fillna(0) * 0, cost_bps=-1)


def test_benchmarks():
    close = pd.DataFrame({"A": np.linspace(10, 20, 300), "B": np.linspace(20, 10, 300)}, index=pd.bdate_range("2019-01-01", periods=300))
    close.iloc[:5, 1] = np.nan
    tsmom = backtest.tsmom_positions(close, 252)
    assert tsmom["A"].iloc[:252].isna().all() and (tsmom["A"].iloc[252:] == 1).all()
    assert (tsmom["B"].iloc[257:] == -1).all()
    lo = backtest.long_only_positions(close)
    assert lo["B"].iloc[:5].isna().all() and (lo.iloc[5:] == 1).all().all()
    bench = backtest.benchmark_positions(close, close.index[260:])
    assert set(bench) == {"Long only", "TSMOM"} and len(bench["TSMOM"]) == 40


def test_turnover():
    w = pd.DataFrame({"A": [0.5, 0.5, -0.5], "B": [0.0, 0.2, 0.2]}, index=IDX[:3])
    np.testing.assert_allclose(backtest.turnover(w).to_numpy(), [0.5, 0.2, 1.0])
