"""Point-in-time universes: membership spells and aliases, selection, coverage, and the membership
mask that walk-forward training and the backtest apply."""

import importlib

import numpy as np
import pandas as pd
import pytest

from kit import data, portfolio, training

wf_module = importlib.import_module("kit.training.walk_forward")


def test_membership_file_aliases_and_boundaries():
    m = data.load_membership()
    hwm = m[m["symbol"] == "HWM"]
    assert ("ARNC", pd.Timestamp("1996-01-02")) in set(zip(hwm["ticker"], hwm["start_date"], strict=True))
    assert "ARNC" not in set(m["symbol"])  # the whole Arconic spell is credited to the store's HWM
    ir = m[m["ticker"] == "IR"]  # IR until 2020-03-02 is Trane Technologies (TT) in the store
    assert set(ir.loc[ir["end_date"] <= pd.Timestamp("2020-03-03"), "symbol"]) == {"TT"}
    assert set(ir.loc[ir["start_date"] >= pd.Timestamp("2020-03-03"), "symbol"]) == {"IR"}
    raw = data.load_membership(aliases=None)
    assert len(raw) == 1230 and raw["ticker"].nunique() == 1181
    # start inclusive, end exclusive: the day of a change belongs to the incoming ticker
    assert "HWM" in data.members_on("2020-04-06") and "HWM" in data.members_on("2020-04-03")
    assert "AMZN" not in data.members_on("2005-11-18") and "AMZN" in data.members_on("2005-11-21")
    mask = data.membership_mask(pd.DatetimeIndex(["2005-11-18", "2005-11-21"]), ["AMZN", "NOPE"])
    assert mask.to_numpy().tolist() == [[False, False], [True, False]]


def test_survivorship_coverage_of_2005():
    first = pd.read_parquet(data.default_store(), columns=["symbol", "date"]).groupby("symbol")["date"].min()
    cov = data.survivorship_coverage("2005-01-03", first.index, first)
    assert (cov["members"], cov["in_store"]) == (494, 244)
    assert {"LEHMQ", "WB", "MER", "BSC"} <= set(cov["missing"])  # gone by 2021, absent from the store
    assert set(cov["missing_long_standing"]) <= set(cov["missing"])
    assert cov["aliased"]["UTX"] == "RTX"
    assert data.survivorship_coverage("2021-04-21", first.index, first)["in_store"] == 503


@pytest.mark.slow
def test_point_in_time_selection_uses_members_of_the_day():
    raw = data.read_prices(end="2004-12-31", start="2003-06-01")
    members = data.members_on("2004-12-31")
    pit = data.select_universe(raw, 30, "2004-12-31", candidates=members)
    surv = data.select_universe(raw, 30, "2004-12-31")
    assert set(pit) <= set(members)
    assert not set(surv) <= set(members)  # survivors picks some stocks that joined the index later
    u = data.load_universe(None, None, 30, "2004-12-31", "2004-06-01", "2006-12-31", universe="point_in_time", cleaning="default")
    assert u.symbols == pit and u.universe == "point_in_time"
    assert u.membership.shape == (len(u.prices["date"].unique()), 30) and u.membership.iloc[0].all()


def _panel(T=700, N=3, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2012-01-02", periods=T)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, (T, N)), axis=0)), index=dates, columns=["AAA", "BBB", "CCC"][:N])
    return close


@pytest.mark.slow
def test_walk_forward_trains_and_trades_members_only(monkeypatch):
    close = _panel()
    member = pd.DataFrame(True, index=close.index, columns=close.columns)
    out_from, back_in = close.index[450], close.index[620]
    member.loc[out_from:back_in, "BBB"] = False  # BBB leaves the index for a while, then returns
    member.loc[: close.index[380], "CCC"] = False  # CCC joins late
    seen = []
    real = wf_module.make_sequences

    def spy(X, y, start, end, lookback, *a, **k):
        seen.append((start, end, y.copy()))
        return real(X, y, start, end, lookback, *a, **k)

    monkeypatch.setattr(wf_module, "make_sequences", spy)
    train = training.TrainConfig(epochs=1, batch_size=64, seed=0, patience=1)
    res = training.walk_forward(close, model="linear", test_start=close.index[500], test_size=100, lookback=20,
                                hidden_size=4, train=train, progress=False, membership=member)
    pos = res.positions
    m = member.reindex(index=pos.index)
    assert pos["BBB"][~m["BBB"]].isna().all() and pos["BBB"][m["BBB"]].notna().any()
    assert pos["AAA"].notna().all()
    # in every fold's training and validation targets, non-members on their decision dates are NaN
    assert seen
    for start, end, y in seen:
        block = ~member.to_numpy()[start:end]
        assert np.isnan(y[start:end][block]).all()
    # the same panel without the mask trains on them and trades them
    free = training.walk_forward(close, model="linear", test_start=close.index[500], test_size=100, lookback=20,
                                 hidden_size=4, train=train, progress=False)
    assert free.positions["BBB"].loc[out_from:back_in].notna().all()


def test_backtest_applies_the_membership_mask():
    close = _panel(T=300)
    vol = pd.DataFrame(0.2, index=close.index, columns=close.columns)
    pos = pd.DataFrame(1.0, index=close.index[100:], columns=close.columns)
    member = pd.DataFrame(True, index=close.index, columns=close.columns)
    member.loc[close.index[150]:, "BBB"] = False
    res = portfolio.compare_strategies(close, {"x": pos}, vol, membership=member)["x"]
    w = res.weights
    assert (w["BBB"].loc[close.index[150]:] == 0).all() and (w["BBB"].loc[: close.index[149]] > 0).all()
    np.testing.assert_allclose(w.loc[close.index[200], ["AAA", "CCC"]].to_numpy(), 0.15 / 0.2 / 2)


def test_align_membership_is_false_where_the_mask_does_not_reach():
    from kit.data import align_membership

    idx = pd.bdate_range("2020-01-01", periods=3)
    mask = pd.DataFrame({"A": [True, False, None]}, index=idx[:3])
    frame = pd.DataFrame(0.0, index=idx.append(pd.DatetimeIndex(["2020-01-06"])), columns=["A", "B"])
    got = align_membership(mask, frame)
    assert got.dtypes.eq(bool).all() and got.shape == (4, 2)
    assert got["A"].tolist() == [True, False, False, False] and not got["B"].any()
