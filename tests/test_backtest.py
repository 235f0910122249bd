import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import portfolio as backtest

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert list(bench) == ["Long only", "TSMOM", "MACD"] and len(bench["TSMOM"]) == 40
    assert set(backtest.benchmark_positions(close, close.index[260:], macd=False)) == {"Long only", "TSMOM"}


def test_turnover():
    w = pd.DataFrame({"A": [0.5, 0.5, -0.5], "B": [0.0, 0.2, 0.2]}, index=IDX[:3])
    np.testing.assert_allclose(backtest.turnover(w).to_numpy(), [0.5, 0.2, 1.0])


# --- costs, slippage and the numpy reference -------------------------------------------------


@pytest.mark.slow
def test_simulate_slippage_hand_computed_two_days():
    close = pd.DataFrame({"A": [100.0, 110.0]}, index=IDX[:2])
    w = pd.DataFrame({"A": [0.5, 0.5]}, index=IDX[:2])
    res = backtest.simulate(close, w, cost_bps=10, slippage_bps=20)
    # day 0: buy 0.005 shares at 100 * 1.002 = 100.2; fee 0.001 * 0.005 * 100.2
    cash0 = 1 - 0.005 * 100.2 * 1.001
    v0 = cash0 + 0.005 * 100
    # day 1: value cash0 + 0.005 * 110; target 0.5 * value / 110 shares: a sale at 110 * 0.998
    v1 = cash0 + 0.005 * 110
    d = 0.5 * v1 / 110 - 0.005
    assert d < 0
    cash1 = cash0 + (-d) * 110 * 0.998 * (1 - 0.001)
    v1_after = cash1 + 0.5 * v1
    np.testing.assert_allclose(res.returns.to_numpy(), [v0 - 1, v1_after / v0 - 1], rtol=1e-12)
    ref = backtest.reference_returns(close, w, cost_bps=10, slippage_bps=20)
    np.testing.assert_allclose(ref.to_numpy(), [v0 - 1, v1_after / v0 - 1], rtol=1e-12)


@st.composite
def _book(draw):
    """Random prices with listings and delistings (NaN before the first and after the last
    price), vol-scaled weights of random positions that are 0 where a symbol has no price,
    random days without rebalance (whole row NaN: the book drifts), costs and slippage."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    T, N = draw(st.integers(5, 80)), draw(st.integers(1, 6))
    idx = pd.bdate_range("2020-01-01", periods=T)
    cols = [f"S{i}" for i in range(N)]
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, (T, N)), 0)) * rng.uniform(0.05, 50, N)
    for j in range(N):
        first = draw(st.integers(0, T - 1))
        last = draw(st.integers(first, T - 1))
        close[:first, j] = np.nan
        close[last + 1 :, j] = np.nan
    close = pd.DataFrame(close, index=idx, columns=cols)
    pos = pd.DataFrame(rng.uniform(-1, 1, (T, N)), index=idx, columns=cols).where(close.notna())
    vol = pd.DataFrame(rng.uniform(0.05, 0.6, (T, N)), index=idx, columns=cols)
    w = backtest.vol_scaled_weights(pos, vol, target_vol=draw(st.sampled_from([0.05, 0.15, 1.0])), max_gross=draw(st.floats(0.05, 0.95)))
    hold = rng.uniform(size=T) < draw(st.sampled_from([0.0, 0.3, 0.8]))
    w[hold] = np.nan
    return close, w, draw(st.sampled_from([0.0, 1.0, 5.0, 20.0])), draw(st.sampled_from([0.0, 2.0, 10.0]))


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(_book())
def test_simulate_equals_numpy_reference_with_listings_drift_costs_and_slippage(book):
    close, w, cost_bps, slippage_bps = book
    got = backtest.simulate(close, w, cost_bps, slippage_bps=slippage_bps).returns
    ref = backtest.reference_returns(close, w, cost_bps, slippage_bps)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), atol=1e-10, rtol=0)


@pytest.mark.slow
def test_reference_detects_drift_between_rebalances():
    close = pd.DataFrame({"A": [100.0, 120.0, 90.0], "B": [50.0, 50.0, 50.0]}, index=IDX[:3])
    w = pd.DataFrame({"A": [0.5, np.nan, np.nan], "B": [0.0, np.nan, np.nan]}, index=IDX[:3])
    # held from day 0: equity 1 -> 0.5 + 0.5 * 1.2 = 1.1 -> 0.5 + 0.5 * 0.9 = 0.95
    np.testing.assert_allclose(backtest.reference_returns(close, w).to_numpy(), [0.0, 0.1, 0.95 / 1.1 - 1], rtol=1e-14)
    np.testing.assert_allclose(backtest.simulate(close, w).returns.to_numpy(), [0.0, 0.1, 0.95 / 1.1 - 1], rtol=1e-12)
    daily = w.ffill()  # rebalanced to 0.5 each day instead: 1 -> 1.1 -> 1.1 * (1 + 0.5 * -0.25)
    np.testing.assert_allclose(backtest.reference_returns(close, daily).to_numpy(), [0.0, 0.1, -0.125], rtol=1e-14)
    np.testing.assert_allclose(backtest.turnover(w).to_numpy(), [0.5, 0.0, 0.0])


@pytest.mark.slow
def test_simulate_rejects_bad_weights():
    close = pd.DataFrame({"A": [10.0, 11.0], "B": [5.0, 5.0]}, index=IDX[:2])
    with pytest.raises(ValueError, match="NaN weight for B"):
        backtest.simulate(close, pd.DataFrame({"A": [0.1, 0.1], "B": [0.0, np.nan]}, index=IDX[:2]))
    with pytest.raises(ValueError, match="infinite weight"):
        backtest.simulate(close, pd.DataFrame({"A": [0.1, np.inf], "B": [0.0, 0.0]}, index=IDX[:2]))
    with pytest.raises(ValueError, match="slippage_bps"):
        backtest.simulate(close, close * 0, slippage_bps=-1)
    with pytest.raises(ValueError, match="slippage_bps"):
        backtest.reference_returns(close, close * 0, slippage_bps=-1)


# --- gross exposure above 100% -------------------------------------------------------------------


@pytest.mark.slow
def test_vectorbt_clips_purchases_above_full_investment_and_the_kit_refuses_it():
    """What vectorbt does with a long book of 120% of equity: it buys only what the cash allows
    (here the first asset in full and the second in part), so the book holds about 100%, not 120%,
    and its P&L is not the target's. simulate refuses such weights; the reference (which may
    borrow) shows the intended P&L."""
    import vectorbt as vbt

    idx = pd.bdate_range("2020-01-01", periods=3)
    close = pd.DataFrame({"A": [100.0, 110.0, 121.0], "B": [50.0, 55.0, 60.5]}, index=idx)
    w = pd.DataFrame({"A": [0.6] * 3, "B": [0.6] * 3}, index=idx)
    pf = vbt.Portfolio.from_orders(
        close, size=w, size_type="targetpercent", direction="both", group_by=True, cash_sharing=True, call_seq="auto", init_cash=1e6, freq="1D"
    )
    held = (pf.assets() * close).sum(axis=1) / pf.value()
    assert held.iloc[0] == pytest.approx(1.0, abs=1e-9)  # clipped to the cash: 100%, not 120%
    assert pf.returns().iloc[1] == pytest.approx(0.10, abs=1e-9)  # a 10% move earns 10%, not 12%
    ref = backtest.reference_returns(close, w)
    assert ref.iloc[1] == pytest.approx(0.12, abs=1e-12)  # the target book (borrowing 20%)
    with pytest.raises(ValueError, match="net exposure 1.200000 > 1"):
        backtest.simulate(close, w)


@pytest.mark.slow
def test_gross_cap_keeps_a_leveraged_request_simulable():
    """Volatility targeting with low volatilities asks for 300% gross; the cap brings it to 95%,
    where vectorbt fills every order and agrees with the reference, costs and slippage included."""
    rng = np.random.default_rng(3)
    T = 40
    idx = pd.bdate_range("2020-01-01", periods=T)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, 3)), 0)), index=idx, columns=list("ABC"))
    pos = pd.DataFrame(1.0, index=idx, columns=close.columns)
    vol = pd.DataFrame(0.05, index=idx, columns=close.columns)  # 0.15 / 0.05 = 3x per asset
    uncapped = backtest.vol_scaled_weights(pos, vol, max_gross=100)
    assert uncapped.sum(axis=1).iloc[0] == pytest.approx(3.0)
    w = backtest.vol_scaled_weights(pos, vol)
    assert w.abs().sum(axis=1).max() == pytest.approx(0.95)
    got = backtest.simulate(close, w, cost_bps=20, slippage_bps=10)
    np.testing.assert_allclose(got.returns.to_numpy(), backtest.reference_returns(close, w, 20, 10).to_numpy(), atol=1e-12, rtol=0)
    held = (got.portfolio.assets() * close).sum(axis=1)
    assert held.iloc[0] / backtest.INIT_CASH == pytest.approx(0.95, rel=1e-12)  # every order filled in full


# --- MACD benchmark --------------------------------------------------------------------------------


def test_macd_positions_combine_the_three_signals():
    from kit import features

    rng = np.random.default_rng(1)
    idx = pd.bdate_range("2015-01-01", periods=450)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0.0005, 0.015, (450, 2)), 0)), index=idx, columns=["A", "B"])
    x = backtest.macd_positions(close)
    t, j = 420, 1
    ys = [features.macd_signal(close, s, long).iat[t, j] for s, long in [(8, 24), (16, 48), (32, 96)]]
    assert x.iat[t, j] == pytest.approx(np.mean([y * np.exp(-y * y / 4) / 0.89 for y in ys]), rel=1e-12)
    assert x.iloc[: 63 + 252 - 2].isna().all().all() and x.iloc[63 + 252 :].notna().all().all()
    assert x.abs().max().max() <= np.sqrt(2) * np.exp(-0.5) / 0.89 + 1e-12
    trend = pd.DataFrame({"up": np.exp(np.linspace(0, 1, 450) + 0.01 * np.sin(np.arange(450)))}, index=idx)
    assert (backtest.macd_positions(trend).dropna() > 0).all().all()


# --- portfolio-level volatility targeting -------------------------------------------------------


def _regime_book(seed=0, T=400, N=5):
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2018-01-01", periods=T)
    sd = np.where(np.arange(T)[:, None] < T // 2, 0.005, 0.03)  # a calm then a wild half
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 1, (T, N)) * sd, 0)), index=idx, columns=[f"S{i}" for i in range(N)])
    w = pd.DataFrame(np.sign(rng.normal(size=(T, N))) * 0.1, index=idx, columns=close.columns)
    return close, w


def test_portfolio_vol_scaling_uses_past_returns_only():
    close, w = _regime_book()
    scaled = backtest.portfolio_vol_scaled_weights(w, close, 0.10, max_gross=10)
    t0 = 250
    shocked = close.copy()
    shocked.iloc[t0 + 1 :] *= np.exp(np.random.default_rng(9).normal(0, 0.2, shocked.iloc[t0 + 1 :].shape)).cumprod(axis=0)
    again = backtest.portfolio_vol_scaled_weights(w, shocked, 0.10, max_gross=10)
    pd.testing.assert_frame_equal(scaled.iloc[: t0 + 1], again.iloc[: t0 + 1])
    assert not scaled.iloc[t0 + 2 :].equals(again.iloc[t0 + 2 :])


def test_portfolio_vol_scaling_hits_its_target_and_respects_the_cap():
    from kit import features

    close, w = _regime_book(seed=1)
    r = features.daily_returns(close).fillna(0.0)
    book = lambda wt: (wt.shift(1) * r).sum(axis=1).iloc[60:]  # noqa: E731
    scaled = backtest.portfolio_vol_scaled_weights(w, close, 0.10, max_gross=10)
    calm, wild = book(scaled).iloc[:140], book(scaled).iloc[200:]
    for half in (calm, wild):  # unscaled the two halves differ 6x in volatility
        assert half.std() * np.sqrt(252) == pytest.approx(0.10, rel=0.3)
    capped = backtest.portfolio_vol_scaled_weights(w, close, 0.10, max_gross=0.95)
    assert capped.abs().sum(axis=1).max() <= 0.95 + 1e-12
    assert capped.abs().sum(axis=1).iloc[100:180].min() == pytest.approx(0.95)  # calm: the cap binds
    flat = backtest.portfolio_vol_scaled_weights(w, close * 0 + 100, 0.10)  # no moves: sigma 0 -> unscaled
    pd.testing.assert_frame_equal(flat, w)
    with pytest.raises(ValueError, match="portfolio_target_vol"):
        backtest.portfolio_vol_scaled_weights(w, close, 0.0)


@pytest.mark.slow
def test_compare_strategies_with_portfolio_target_vol_and_slippage():
    close, w = _regime_book(seed=2, T=300, N=4)
    vol = pd.DataFrame(0.2, index=close.index, columns=close.columns)
    pos = {"sign": np.sign(w)}
    res = backtest.compare_strategies(close, pos, vol, cost_bps=5, slippage_bps=5, portfolio_target_vol=0.10)["sign"]
    expected = backtest.portfolio_vol_scaled_weights(backtest.vol_scaled_weights(pos["sign"], vol), close, 0.10)
    pd.testing.assert_frame_equal(res.weights, expected)
    assert res.slippage_bps == 5 and res.cost_bps == 5


# --- cost sweep -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cost_sweep_columns_match_simulate_and_decay_with_costs():
    close, w = _regime_book(seed=4, T=120, N=3)
    sweep = backtest.cost_sweep(close, w)
    assert list(sweep.columns) == [0.0, 1.0, 2.0, 5.0, 10.0, 20.0] and sweep.columns.name == "cost_bps"
    for c in (0.0, 5.0, 20.0):
        np.testing.assert_allclose(sweep[c].to_numpy(), backtest.reference_returns(close, w, c).to_numpy(), atol=1e-12, rtol=0)
    final = (1 + sweep).prod()
    assert (np.diff(final.to_numpy()) < 0).all()


@pytest.mark.slow
def test_returns_from_fills_equal_vectorbt_returns():
    close, w = _regime_book(seed=5, T=150, N=6)
    close.iloc[:20, 2] = np.nan  # a late listing
    w.iloc[:20, 2] = 0.0
    res = backtest.simulate(close, w, cost_bps=7, slippage_bps=3)
    np.testing.assert_allclose(res.returns.to_numpy(), res.portfolio.returns().to_numpy(), atol=1e-12, rtol=0)
