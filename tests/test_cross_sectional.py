import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import features as cs
from kit import portfolio
from kit.portfolio import cross_sectional as xs


def _close(T=400, N=20, seed=0, start="2015-01-01"):
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range(start, periods=T)
    r = rng.normal(0.0003, 0.015, (T, N))
    return pd.DataFrame(100 * np.exp(np.cumsum(r, 0)), index=idx, columns=[f"S{i:02d}" for i in range(N)])


def test_rebalance_dates_are_the_last_trading_dates_of_each_period():
    idx = pd.DatetimeIndex(["2020-01-30", "2020-01-31", "2020-02-03", "2020-02-27", "2020-03-02", "2020-03-31", "2020-04-01"])
    assert list(cs.month_end_dates(idx)) == list(pd.DatetimeIndex(["2020-01-31", "2020-02-27", "2020-03-31", "2020-04-01"]))
    assert list(cs.rebalance_dates(idx, "Q")) == list(pd.DatetimeIndex(["2020-03-31", "2020-04-01"]))
    wk = pd.bdate_range("2021-01-04", periods=10)  # Mon 4 Jan .. Fri 15 Jan
    assert list(cs.rebalance_dates(wk, "W")) == list(pd.DatetimeIndex(["2021-01-08", "2021-01-15"]))
    with pytest.raises(ValueError, match="freq"):
        cs.rebalance_dates(idx, "D")
    with pytest.raises(ValueError, match="not a date of the index"):
        cs.rebalance_positions(idx, ["2020-02-29"])


def test_momentum_12_1_hand_case_and_no_price_today():
    close = pd.DataFrame({"A": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0], "B": [10.0, 10.0, 11.0, 12.0, 13.0, np.nan]})
    m = cs.momentum_12_1(close, lookback=4, skip=1)
    # t=4: close_3 / close_0 - 1 = 8/1 - 1 = 7 (A), 12/10 - 1 (B); t=5: 16/2 - 1 (A), B has no price at t=5
    assert m["A"].iloc[4] == pytest.approx(7.0)
    assert m["B"].iloc[4] == pytest.approx(0.2)
    assert m["A"].iloc[5] == pytest.approx(7.0)
    assert np.isnan(m["B"].iloc[5])
    assert m.iloc[:4].isna().all().all()
    with pytest.raises(ValueError, match="skip"):
        cs.momentum_12_1(close, lookback=4, skip=4)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 10), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_quantile_buckets_equal_qcut_without_ties(q, m, seed):
    x = np.random.default_rng(seed).permutation(q * m).astype(float)  # distinct values, n = q * m
    got = cs.quantile_buckets(pd.DataFrame([x]), None, q).to_numpy()[0]
    want = pd.qcut(x, q, labels=False) + 1
    np.testing.assert_array_equal(got, want)


def test_decile_weights_dollar_neutral_with_the_right_names_and_held_between_rebalances():
    idx = pd.bdate_range("2020-01-01", periods=60)
    N = 20
    cols = [f"S{i:02d}" for i in range(N)]
    scores = pd.DataFrame(np.tile(np.arange(N, dtype=float), (60, 1)), index=idx, columns=cols)
    reb = cs.month_end_dates(idx)
    w = xs.decile_long_short_weights(scores, None, reb)
    first = idx.get_loc(reb[0])
    assert (w.iloc[:first] == 0).all().all()  # nothing before the first rebalance
    row = w.loc[reb[0]]
    assert row.sum() == pytest.approx(0.0, abs=1e-15)
    assert row.abs().sum() == pytest.approx(1.0)
    assert set(row.index[row > 0]) == {"S18", "S19"} and set(row.index[row < 0]) == {"S00", "S01"}
    np.testing.assert_allclose(row[row > 0], 0.25)
    # held constant until the next rebalance
    nxt = idx.get_loc(reb[1])
    np.testing.assert_array_equal(w.iloc[first:nxt].to_numpy(), np.tile(row.to_numpy(), (nxt - first, 1)))
    # drift: NaN rows off rebalance dates, the rebalance rows themselves equal
    wd = xs.decile_long_short_weights(scores, None, reb, hold="drift")
    assert wd.iloc[first + 1 : nxt].isna().all().all()
    np.testing.assert_array_equal(wd.loc[reb].to_numpy(), w.loc[reb].to_numpy())


def test_point_in_time_mask_is_respected():
    idx = pd.bdate_range("2020-01-01", periods=45)
    N = 12
    cols = [f"S{i:02d}" for i in range(N)]
    scores = pd.DataFrame(np.tile(np.arange(N, dtype=float), (45, 1)), index=idx, columns=cols)
    mask = pd.DataFrame(True, index=idx, columns=cols)
    mask["S11"] = False  # the best score, never a member
    reb = cs.month_end_dates(idx)
    t1 = idx.get_loc(reb[0])
    mask.iloc[t1 + 3 :, 10] = False  # S10 leaves the universe three days after the first rebalance
    w = xs.decile_long_short_weights(scores, mask, reb, n_quantiles=5)
    assert (w["S11"] == 0).all()
    assert (w.to_numpy()[~mask.to_numpy()] == 0).all()
    row = w.loc[reb[0]]
    # ranked among the 11 members: top quintile = ceil(5 r / 11) == 5 -> ranks 9..11 = S08, S09, S10
    assert set(row.index[row > 0]) == {"S08", "S09", "S10"}
    assert row.sum() == pytest.approx(0.0, abs=1e-15)
    assert w["S10"].iloc[t1 + 2] > 0 and w["S10"].iloc[t1 + 3] == 0  # closed when it leaves, not replaced
    assert w.iloc[t1 + 3].sum() < 0  # so the book is net short until the next rebalance (documented)
    with pytest.raises(ValueError, match="membership"):
        xs.decile_long_short_weights(scores, mask.iloc[:10], reb)


def test_vol_scaled_legs_are_inverse_volatility_and_sum_to_half():
    idx = pd.bdate_range("2020-01-01", periods=25)
    cols = list("ABCDEFGHIJ")
    scores = pd.DataFrame(np.tile(np.arange(10, dtype=float), (25, 1)), index=idx, columns=cols)
    vol = pd.DataFrame(np.tile(np.linspace(0.01, 0.03, 10), (25, 1)), index=idx, columns=cols)
    reb = cs.month_end_dates(idx)
    w = xs.decile_long_short_weights(scores, None, reb, n_quantiles=5, vol_scale=True, daily_vol=vol).loc[reb[0]]
    # top quintile {I, J}, bottom {A, B}; weights proportional to 1 / vol within each leg
    v = vol.loc[reb[0]]
    assert w[["I", "J"]].sum() == pytest.approx(0.5) and w[["A", "B"]].sum() == pytest.approx(-0.5)
    assert w["I"] / w["J"] == pytest.approx(v["J"] / v["I"])
    assert w["A"] / w["B"] == pytest.approx(v["B"] / v["A"])
    with pytest.raises(ValueError, match="daily_vol"):
        xs.decile_long_short_weights(scores, None, reb, vol_scale=True)


def test_ties_join_a_leg_whole_and_a_fully_tied_or_thin_cross_section_gives_no_book():
    idx = pd.bdate_range("2020-01-01", periods=25)
    cols = [f"S{i}" for i in range(10)]
    reb = cs.month_end_dates(idx)
    flat = pd.DataFrame(np.r_[np.zeros(6), 1.0, 2.0, 3.0, 4.0][None].repeat(25, 0), index=idx, columns=cols)
    row = xs.decile_long_short_weights(flat, None, reb, n_quantiles=5).loc[reb[0]]
    # six names tied at the bottom: all six are shorted alike; the top quintile is S8, S9
    np.testing.assert_allclose(row.to_numpy(), np.r_[np.full(6, -0.5 / 6), 0.0, 0.0, 0.25, 0.25])
    middle = pd.DataFrame(np.r_[-1.0, np.zeros(8), 1.0][None].repeat(25, 0), index=idx, columns=cols)
    row = xs.decile_long_short_weights(middle, None, reb, n_quantiles=5).loc[reb[0]]
    # eight names tied in the middle reach into both quintile legs: they join neither
    np.testing.assert_allclose(row.to_numpy(), np.r_[-0.5, np.zeros(8), 0.5])
    tied = pd.DataFrame(np.zeros((25, 10)), index=idx, columns=cols)
    assert (xs.decile_long_short_weights(tied, None, reb, n_quantiles=5) == 0).all().all()
    few = pd.DataFrame(np.arange(10.0)[None].repeat(25, 0), index=idx, columns=cols)
    assert (xs.decile_long_short_weights(few, None, reb, n_quantiles=10, min_names=11) == 0).all().all()


def test_cs_momentum_weights_buy_the_winners_without_look_ahead():
    close = _close()
    w = xs.cs_momentum_weights(close)
    mom = cs.momentum_12_1(close)
    reb = cs.month_end_dates(close.index)
    live = [d for d in reb if mom.loc[d].notna().sum() >= 10]
    assert live, "the test needs rebalance dates with a full signal"
    for d in live:
        row = w.loc[d]
        assert row.sum() == pytest.approx(0.0, abs=1e-12) and row.abs().sum() == pytest.approx(1.0)
        assert set(row.index[row > 0]) == set(mom.loc[d].nlargest(2).index)
        assert set(row.index[row < 0]) == set(mom.loc[d].nsmallest(2).index)
    # shock every price after a date: no weight on or before it changes
    cut = live[len(live) // 2]
    shocked = close.copy()
    after = shocked.index > cut
    shocked.loc[after] *= np.random.default_rng(1).uniform(0.5, 2.0, (after.sum(), close.shape[1]))
    w2 = xs.cs_momentum_weights(shocked)
    np.testing.assert_array_equal(w.loc[:cut].to_numpy(), w2.loc[:cut].to_numpy())
    assert not np.array_equal(w.loc[cut:].to_numpy(), w2.loc[cut:].to_numpy())


def test_cs_macd_weights_rank_the_baz_composite_and_need_a_price():
    close = _close(T=420)
    close.iloc[380:, 3] = np.nan  # S03 delists
    w = xs.cs_macd_weights(close, n_quantiles=5)
    sig = portfolio.macd_positions(close)
    reb = cs.month_end_dates(close.index)
    d = reb[-1]
    row = w.loc[d]
    assert row["S03"] == 0 and (w["S03"].iloc[380:] == 0).all()
    n = sig.loc[d].notna().sum()
    assert n == 19
    top = sig.loc[d].nlargest(n - (n * 4) // 5).index  # ceil(5 r / 19) == 5  <=>  r >= 16: four names
    assert set(row.index[row > 0]) == set(top)
    assert row.sum() == pytest.approx(0.0, abs=1e-12)
    wv = xs.cs_momentum_weights(close, vol_scale=True)
    assert wv.sum(axis=1).abs().max() < 1e-12


# ------------------------------------------------------------------------------------------------
# legs, long-only tilts, benchmarks on an out-of-sample window
# ------------------------------------------------------------------------------------------------


def test_quantile_legs_are_held_between_rebalances_and_nan_for_non_members():
    idx = pd.bdate_range("2020-01-01", periods=45)
    cols = [f"S{i:02d}" for i in range(10)]
    scores = pd.DataFrame(np.tile(np.arange(10.0), (45, 1)), index=idx, columns=cols)
    mask = np.ones(scores.shape, bool)
    reb = cs.month_end_dates(idx)
    t1, t2 = idx.get_loc(reb[0]), idx.get_loc(reb[1])
    mask[t1 + 2 :, 9] = False
    legs = cs.quantile_legs(scores, mask, reb, n_quantiles=5)
    assert legs.iloc[:t1].isna().all().all()  # no decision before the first rebalance
    np.testing.assert_array_equal(legs.iloc[t1].to_numpy(), [-1, -1, 0, 0, 0, 0, 0, 0, 1, 1])
    assert legs.iloc[t1 + 1, 9] == 1 and np.isnan(legs.iloc[t1 + 2, 9])  # left the universe: cannot be held
    # re-ranked among 9: ceil(5 r / 9) is 1 for rank 1 only and 5 for ranks 8 and 9
    np.testing.assert_array_equal(legs.iloc[t2].to_numpy()[:9], [-1, 0, 0, 0, 0, 0, 0, 1, 1])
    w = xs.leg_weights(legs, reb)
    np.testing.assert_array_equal(w.to_numpy(), xs.decile_long_short_weights(scores, mask, reb, n_quantiles=5).to_numpy())
    with pytest.raises(ValueError, match="legs must be"):
        xs.leg_weights(legs * 2, reb)


def test_long_only_tilt_holds_the_top_leg_at_full_gross():
    close = _close()
    w = xs.cs_momentum_weights(close, long_only=True, gross=0.9)
    ls = xs.cs_momentum_weights(close)
    live = w.abs().sum(axis=1) > 0
    assert live.any() and np.allclose(w[live].sum(axis=1), 0.9) and (w.to_numpy() >= 0).all()
    # the long-only tilt holds exactly the long leg of the long-short book
    np.testing.assert_array_equal((w > 0).to_numpy(), (ls > 0).to_numpy())


def test_cross_sectional_benchmarks_start_flat_inside_the_window():
    close = _close(T=600)
    oos = close.index[400:]  # the MACD composite needs 314 prices
    bench = xs.cross_sectional_benchmarks(close, oos, n_quantiles=5)
    assert list(bench) == list(xs.CS_BENCHMARK_NAMES)
    first_reb = cs.month_end_dates(close.index)[cs.month_end_dates(close.index) >= oos[0]][0]
    for name, w in bench.items():
        assert w.index.equals(oos)
        assert (w.loc[: first_reb - pd.Timedelta(days=1)] == 0).all().all(), name  # flat until the first rebalance close
        assert w.loc[first_reb].abs().sum() > 0, name
        full = xs.cs_momentum_weights(close, n_quantiles=5) if name == "CS momentum" else None
        if full is not None:
            np.testing.assert_array_equal(w.loc[first_reb:].to_numpy(), full.loc[first_reb : oos[-1]].to_numpy())


# ------------------------------------------------------------------------------------------------
# long-short books in the backtest: vectorbt against the numpy reference, borrow fees, impact
# ------------------------------------------------------------------------------------------------


def _panel(T=260, N=30, seed=3):
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2018-01-01", periods=T)
    r = rng.normal(0.0002, 0.02, (T, N))
    r[150, 0] = 1.0  # a name of the book doubles in a day
    close = pd.DataFrame(100 * np.cumprod(1 + r, 0), index=idx, columns=[f"S{i:02d}" for i in range(N)])
    vol = pd.DataFrame(rng.uniform(1e5, 1e6, (T, N)), index=idx, columns=close.columns)
    return close, vol


@pytest.mark.slow
@pytest.mark.parametrize("gross", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("hold", ["constant", "drift"])
def test_long_short_book_over_full_gross_vectorbt_equals_the_numpy_reference(gross, hold):
    close, _ = _panel()
    scores = close.pct_change(20, fill_method=None)  # any score; here a 20-day return
    w = xs.decile_long_short_weights(scores, close.notna(), cs.rebalance_dates(close.index, "W"), n_quantiles=5, gross=gross, hold=hold)
    held = w.ffill()
    assert held.abs().sum(axis=1).max() == pytest.approx(gross) and held.sum(axis=1).abs().max() < 1e-12
    for cost, slip in ((0.0, 0.0), (5.0, 2.0)):
        got = portfolio.simulate(close, w, cost, slippage_bps=slip)
        ref = portfolio.reference_returns(close, w, cost, slip)
        assert got.engine == "vectorbt"
        np.testing.assert_allclose(got.returns.to_numpy(), ref.to_numpy(), atol=1e-10, rtol=0)
    assert got.returns.std() > 0


def test_borrow_fee_hand_case():
    idx = pd.bdate_range("2020-01-01", periods=3)
    close = pd.DataFrame({"A": [100.0, 110.0, 110.0], "B": [50.0, 40.0, 40.0]}, index=idx)
    w = pd.DataFrame({"A": [0.5, np.nan, np.nan], "B": [-0.5, np.nan, np.nan]}, index=idx)  # trade once, then hold
    b = 252.0  # bps per year: 1 bp of short notional per day
    got = portfolio.reference_returns(close, w, borrow_bps=b).to_numpy()
    # day 0: 0.005 A, -0.01 B, cash 1.0, no fee (nothing short yet). day 1: short value 0.01 * 40 = 0.4,
    # fee 0.4e-4; equity 1 + 0.005 * 110 - 0.01 * 40 - 0.4e-4 = 1.15 - 0.00004. day 2: the same fee again.
    v1 = 1.15 - 0.4e-4
    v2 = v1 - 0.4e-4
    np.testing.assert_allclose(got, [0.0, v1 - 1.0, v2 / v1 - 1.0], rtol=0, atol=1e-15)
    res = portfolio.simulate(close, w, borrow_bps=b)
    assert res.engine == "reference" and res.portfolio is None
    np.testing.assert_allclose(res.returns.to_numpy(), got, atol=1e-15)
    np.testing.assert_allclose(res.costs["borrow"].to_numpy(), [0.0, 0.4e-4, 0.4e-4 / v1], atol=1e-15)
    with pytest.raises(ValueError, match="vectorbt"):
        portfolio.simulate(close, w, borrow_bps=b, engine="vectorbt")
    with pytest.raises(ValueError, match="borrow_bps"):
        portfolio.reference_returns(close, w, borrow_bps=-1)


def test_square_root_impact_hand_case():
    idx = pd.bdate_range("2020-01-01", periods=3)
    close = pd.DataFrame({"A": [100.0, 100.0, 100.0]}, index=idx)
    volume = pd.DataFrame({"A": [1e6, 1e6, 1e6]}, index=idx)  # $1e8 a day
    imp = portfolio.market_impact(close, volume, half_spread_bps=1.0, k=1.0, capital=1e6)
    imp = portfolio.MarketImpact(imp.adv, imp.daily_vol.fillna(0.02), 1.0, 1.0, 1e6)  # a known daily vol of 2%
    assert np.isnan(imp.adv["A"].iloc[0]) and imp.adv["A"].iloc[1] == pytest.approx(1e8)  # past days only
    w = pd.DataFrame({"A": [0.0, 0.5, np.nan]}, index=idx)  # buy on day 1, hold on day 2
    got = portfolio.reference_returns(close, w, cost_bps=3.0, impact=imp).to_numpy()
    # day 1: buy $0.5e6 of A: participation 0.5e6 / 1e8 = 0.005; cost per unit = 3e-4 + 1e-4 + 0.02 * sqrt(0.005)
    unit = 3e-4 + 1e-4 + 0.02 * np.sqrt(0.005)
    np.testing.assert_allclose(got, [0.0, -0.5 * unit, 0.0], atol=1e-15)
    with pytest.raises(ValueError, match="impact: an order in A on 2020-01-01"):
        portfolio.reference_returns(close, pd.DataFrame({"A": [0.5, 0.5, 0.5]}, index=idx), impact=imp)
    with pytest.raises(ValueError, match="capital"):
        portfolio.MarketImpact(imp.adv, imp.daily_vol, capital=0)


def test_impact_after_a_masked_stretch_uses_the_last_adv_known_before_it():
    # a cleaning policy masks a stretch longer than the ADV window: the first day after it has no traded
    # day in its window; the ADV is the last one known before the stretch (past data only), not NaN
    idx = pd.bdate_range("2020-01-01", periods=40)
    close = pd.DataFrame({"A": 100.0}, index=idx)
    vol = np.full(40, 1e6)
    vol[5:30] = np.nan  # 25 masked days, adv_window 20
    volume = pd.DataFrame({"A": vol}, index=idx)
    imp = portfolio.market_impact(close, volume, adv_window=20)
    assert imp.adv["A"].iloc[30] == pytest.approx(1e8) and imp.adv["A"].iloc[1:].notna().all()
    assert np.isnan(imp.adv["A"].iloc[0])  # nothing known before the first day: an order there is still refused
    before = portfolio.market_impact(close.iloc[:31], volume.iloc[:31], adv_window=20)  # no look-ahead: later days change nothing
    assert before.adv["A"].iloc[30] == imp.adv["A"].iloc[30]


@pytest.mark.slow
def test_reference_fee_bookkeeping_with_impact_equals_vectorbt_given_the_same_fees():
    import vectorbt as vbt

    from kit.portfolio import backtest

    close, volume = _panel()
    w = xs.decile_long_short_weights(close.pct_change(20, fill_method=None), close.notna(), cs.rebalance_dates(close.index, "W"), n_quantiles=5,
                                     gross=2.0)
    imp = portfolio.market_impact(close, volume, capital=1e7)
    path = backtest._reference_path(close, w, 5e-4, 0.0, 0.0, imp)
    assert np.nanmax(path["fee_fraction"]) > 5e-4 + 1e-4  # the impact is not negligible at this size
    pf = vbt.Portfolio.from_orders(
        close, size=w.to_numpy(), size_type="targetpercent", direction="both", group_by=True, cash_sharing=True, call_seq="auto",
        fees=np.nan_to_num(path["fee_fraction"], nan=0.0), init_cash=backtest.INIT_CASH, freq="1D",
    )
    vb = backtest._returns_from_fills(pf.order_records, close.to_numpy(), backtest.INIT_CASH)
    np.testing.assert_allclose(vb, path["returns"], atol=1e-10, rtol=0)
    res = portfolio.simulate(close, w, 5.0, impact=imp)
    np.testing.assert_allclose(res.returns.to_numpy(), path["returns"], atol=0)
    assert res.costs["impact"].sum() > 0 and res.costs["borrow"].sum() == 0
    # the cost sweep covers the borrow fee and impact: every level equals the reference, and costs only take away
    sweep = portfolio.cost_sweep(close, w, costs=(0.0, 10.0), borrow_bps=50.0, impact=imp)
    for c in sweep.columns:
        np.testing.assert_allclose(sweep[c].to_numpy(), portfolio.reference_returns(close, w, c, borrow_bps=50.0, impact=imp).to_numpy(), atol=0)
    flat = portfolio.cost_sweep(close, w, costs=(0.0,))
    assert (1 + sweep[0.0]).prod() < (1 + flat[0.0]).prod() and (1 + sweep[10.0]).prod() < (1 + sweep[0.0]).prod()


# ------------------------------------------------------------------------------------------------
# book-level volatility target
# ------------------------------------------------------------------------------------------------


def test_a_constant_scale_leaves_the_sharpe_ratio_exactly_unchanged():
    from kit.analytics import sharpe_ratio

    close, _ = _panel(T=300)
    w = xs.decile_long_short_weights(close.pct_change(20, fill_method=None), close.notna(), n_quantiles=5)
    base = portfolio.reference_returns(close, w)
    scaled = portfolio.reference_returns(close, w * 2.5)
    # daily rebalanced to target weights, no costs: every daily return is exactly 2.5 times the base
    np.testing.assert_allclose(scaled.to_numpy(), 2.5 * base.to_numpy(), rtol=1e-12, atol=1e-16)
    assert sharpe_ratio(scaled) == pytest.approx(sharpe_ratio(base), rel=1e-10)


def test_book_level_target_from_past_returns_hits_the_target_and_changes_the_sharpe_ratio_only_by_estimation():
    """A book of iid returns with constant volatility and a true Sharpe ratio of 1: scaling it to 10%
    with the EWM estimate (past returns only) gives a realised volatility near 10% and a Sharpe ratio
    within 0.1 of the unscaled book's over 20 years (the scale's estimation noise is the only change;
    measured differences over these seeds: below 0.05)."""
    from kit.analytics import sharpe_ratio

    T, N = 5040, 2
    idx = pd.bdate_range("2000-01-03", periods=T)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        r = rng.normal(0.25 / 252, 0.25 / np.sqrt(252), (T, N))  # each asset: 25% vol, Sharpe 1
        close = pd.DataFrame(100 * np.cumprod(1 + r, 0), index=idx, columns=["A", "B"])
        w = pd.DataFrame(np.tile([0.5, 0.5], (T, 1)), index=idx, columns=close.columns)
        scaled = portfolio.portfolio_vol_scaled_weights(w, close, 0.10, max_gross=5.0)
        base = portfolio.reference_returns(close, w).iloc[1:]
        tgt = portfolio.reference_returns(close, scaled).iloc[1:]
        assert tgt.std() * np.sqrt(252) == pytest.approx(0.10, rel=0.1)
        assert abs(sharpe_ratio(tgt) - sharpe_ratio(base)) < 0.1


def test_compare_strategies_takes_weights_beside_positions_with_one_book_target():
    close, _ = _panel(T=300)
    from kit.features import daily_returns, ex_ante_vol

    ann = ex_ante_vol(daily_returns(close))
    w = xs.decile_long_short_weights(close.pct_change(20, fill_method=None), close.notna(), n_quantiles=5)
    pos = np.sign(close.pct_change(20, fill_method=None))
    res = portfolio.compare_strategies(close, {"ts": pos}, ann, cost_bps=1.0, portfolio_target_vol=0.10, max_gross=3.0, max_net=0.95,
                                       weights={"cs": w})
    assert list(res) == ["ts", "cs"]
    net = res["ts"].weights.sum(axis=1).abs().max()
    assert net <= 0.95 + 1e-12 and res["cs"].weights.abs().sum(axis=1).max() <= 3.0 + 1e-12
    with pytest.raises(ValueError, match="both as positions and as weights"):
        portfolio.compare_strategies(close, {"cs": pos}, ann, weights={"cs": w})


def test_benchmark_comparison_asks_the_active_return_and_deflates_it():
    from kit.analytics import benchmark_comparison, deflated_sharpe_ratio, sharpe_ratio

    rng = np.random.default_rng(5)
    idx = pd.bdate_range("2010-01-01", periods=2520)
    bench = pd.Series(rng.normal(0.0003, 0.01, len(idx)), index=idx)
    rets = {
        "CS momentum": bench,
        "skilled": bench + rng.normal(0.0006, 0.003, len(idx)),  # active Sharpe about 3
        "noise": bench + rng.normal(0.0, 0.003, len(idx)),  # no skill beyond the benchmark
    }
    table = benchmark_comparison(rets, {"skilled": "CS momentum", "noise": "CS momentum"}, n_trials=20)
    a = rets["skilled"] - bench
    assert table.loc["skilled", "active_sharpe"] == pytest.approx(sharpe_ratio(a))
    assert table.loc["skilled", "active_dsr"] == pytest.approx(deflated_sharpe_ratio(a, 20))
    assert table.loc["skilled", "active_ci_low"] < table.loc["skilled", "active_sharpe"] < table.loc["skilled", "active_ci_high"]
    assert bool(table.loc["skilled", "beats_benchmark"]) and not bool(table.loc["noise", "beats_benchmark"])
    assert table.loc["noise", "benchmark"] == "CS momentum" and table.loc["noise", "days"] == len(idx)
    with pytest.raises(ValueError, match="not one of the strategies"):
        benchmark_comparison(rets, {"skilled": "Long only"}, n_trials=3)
