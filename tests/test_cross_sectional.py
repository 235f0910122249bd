import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import backtest
from kit import cross_sectional as cs


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
    w = cs.decile_long_short_weights(scores, None, reb)
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
    wd = cs.decile_long_short_weights(scores, None, reb, hold="drift")
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
    w = cs.decile_long_short_weights(scores, mask, reb, n_quantiles=5)
    assert (w["S11"] == 0).all()
    assert (w.to_numpy()[~mask.to_numpy()] == 0).all()
    row = w.loc[reb[0]]
    # ranked among the 11 members: top quintile = ceil(5 r / 11) == 5 -> ranks 9..11 = S08, S09, S10
    assert set(row.index[row > 0]) == {"S08", "S09", "S10"}
    assert row.sum() == pytest.approx(0.0, abs=1e-15)
    assert w["S10"].iloc[t1 + 2] > 0 and w["S10"].iloc[t1 + 3] == 0  # closed when it leaves, not replaced
    assert w.iloc[t1 + 3].sum() < 0  # so the book is net short until the next rebalance (documented)
    with pytest.raises(ValueError, match="membership"):
        cs.decile_long_short_weights(scores, mask.iloc[:10], reb)


def test_vol_scaled_legs_are_inverse_volatility_and_sum_to_half():
    idx = pd.bdate_range("2020-01-01", periods=25)
    cols = list("ABCDEFGHIJ")
    scores = pd.DataFrame(np.tile(np.arange(10, dtype=float), (25, 1)), index=idx, columns=cols)
    vol = pd.DataFrame(np.tile(np.linspace(0.01, 0.03, 10), (25, 1)), index=idx, columns=cols)
    reb = cs.month_end_dates(idx)
    w = cs.decile_long_short_weights(scores, None, reb, n_quantiles=5, vol_scale=True, daily_vol=vol).loc[reb[0]]
    # top quintile {I, J}, bottom {A, B}; weights proportional to 1 / vol within each leg
    v = vol.loc[reb[0]]
    assert w[["I", "J"]].sum() == pytest.approx(0.5) and w[["A", "B"]].sum() == pytest.approx(-0.5)
    assert w["I"] / w["J"] == pytest.approx(v["J"] / v["I"])
    assert w["A"] / w["B"] == pytest.approx(v["B"] / v["A"])
    with pytest.raises(ValueError, match="daily_vol"):
        cs.decile_long_short_weights(scores, None, reb, vol_scale=True)


def test_ties_join_a_leg_whole_and_a_fully_tied_or_thin_cross_section_gives_no_book():
    idx = pd.bdate_range("2020-01-01", periods=25)
    cols = [f"S{i}" for i in range(10)]
    reb = cs.month_end_dates(idx)
    flat = pd.DataFrame(np.r_[np.zeros(6), 1.0, 2.0, 3.0, 4.0][None].repeat(25, 0), index=idx, columns=cols)
    row = cs.decile_long_short_weights(flat, None, reb, n_quantiles=5).loc[reb[0]]
    # six names tied at the bottom: all six are shorted alike; the top quintile is S8, S9
    np.testing.assert_allclose(row.to_numpy(), np.r_[np.full(6, -0.5 / 6), 0.0, 0.0, 0.25, 0.25])
    middle = pd.DataFrame(np.r_[-1.0, np.zeros(8), 1.0][None].repeat(25, 0), index=idx, columns=cols)
    row = cs.decile_long_short_weights(middle, None, reb, n_quantiles=5).loc[reb[0]]
    # eight names tied in the middle reach into both quintile legs: they join neither
    np.testing.assert_allclose(row.to_numpy(), np.r_[-0.5, np.zeros(8), 0.5])
    tied = pd.DataFrame(np.zeros((25, 10)), index=idx, columns=cols)
    assert (cs.decile_long_short_weights(tied, None, reb, n_quantiles=5) == 0).all().all()
    few = pd.DataFrame(np.arange(10.0)[None].repeat(25, 0), index=idx, columns=cols)
    assert (cs.decile_long_short_weights(few, None, reb, n_quantiles=10, min_names=11) == 0).all().all()


def test_cs_momentum_weights_buy_the_winners_without_look_ahead():
    close = _close()
    w = cs.cs_momentum_weights(close)
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
    w2 = cs.cs_momentum_weights(shocked)
    np.testing.assert_array_equal(w.loc[:cut].to_numpy(), w2.loc[:cut].to_numpy())
    assert not np.array_equal(w.loc[cut:].to_numpy(), w2.loc[cut:].to_numpy())


def test_cs_macd_weights_rank_the_baz_composite_and_need_a_price():
    close = _close(T=420)
    close.iloc[380:, 3] = np.nan  # S03 delists
    w = cs.cs_macd_weights(close, n_quantiles=5)
    sig = backtest.macd_positions(close)
    reb = cs.month_end_dates(close.index)
    d = reb[-1]
    row = w.loc[d]
    assert row["S03"] == 0 and (w["S03"].iloc[380:] == 0).all()
    n = sig.loc[d].notna().sum()
    assert n == 19
    top = sig.loc[d].nlargest(n - (n * 4) // 5).index  # ceil(5 r / 19) == 5  <=>  r >= 16: four names
    assert set(row.index[row > 0]) == set(top)
    assert row.sum() == pytest.approx(0.0, abs=1e-12)
    wv = cs.cs_momentum_weights(close, vol_scale=True)
    assert wv.sum(axis=1).abs().max() < 1e-12
