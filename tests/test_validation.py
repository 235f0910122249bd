"""Each validation rule on a small hand-made frame (table-driven), the market-wide downgrade, strict
mode, and the committed store's findings by check and severity."""

import numpy as np
import pandas as pd
import pytest

from kit import data
from tests.conftest import make_ohlcv

PX = ["open", "high", "low", "close"]


def _scale(f, rows, factor, cols=(*PX, "adjusted_close")):
    f = f.copy()
    for c in cols:
        f.loc[rows, c] = f.loc[rows, c] * factor
    return f


def _set(f, row, **values):
    f = f.copy()
    for k, v in values.items():
        f.loc[row, k] = v
    return f


AAA = slice(0, 29)  # rows of symbol AAA in make_ohlcv() (30 days)
LATER = list(range(10, 30))  # AAA from day 10 on

CASES = [
    # (name, mutate, check, severity, field)
    ("duplicate", lambda f: pd.concat([f, f.iloc[[3]]], ignore_index=True), "duplicate_row", "error", "date"),
    ("order", lambda f: f.iloc[[0, 2, 1, *range(3, len(f))]].reset_index(drop=True), "date_order", "warning", "date"),
    ("nan close", lambda f: _set(f, 5, close=np.nan), "missing_value", "error", "close"),
    ("inf high", lambda f: _set(f, 5, high=np.inf), "non_finite_value", "error", "high"),
    ("negative low", lambda f: _set(f, 5, low=-1.0), "non_positive_price", "error", "low"),
    ("high below close", lambda f: _set(f, 5, high=f.loc[5, "low"] * 1.0001), "ohlc_inconsistent", "error", "high"),
    ("negative volume", lambda f: _set(f, 5, volume=-5), "non_positive_volume", "error", "volume"),
    ("zero volume", lambda f: _set(f, 5, volume=0), "non_positive_volume", "warning", "volume"),
    ("weekend", lambda f: _set(f, 5, date=pd.Timestamp("2020-01-11")), "weekend_date", "error", "date"),
    ("gap", lambda f: f.drop(index=7).reset_index(drop=True), "missing_day", "warning", "date"),
    ("crash", lambda f: _scale(f, LATER, 0.4), "large_move", "warning", "adjusted_close"),
    ("stale", lambda f: _set(f, 5, open=42.0, high=42.0, low=42.0, close=42.0, adjusted_close=37.8, volume=0), "stale_quote", "warning", "close"),
    ("bad row", lambda f: _scale(f, [10], 1.6, PX), "bad_row", "error", "close"),
    ("unrecorded 2:1 split", lambda f: _scale(f, LATER, 0.5), "unrecorded_split", "error", "adjusted_close"),
    ("unrecorded 1:10 reverse split", lambda f: _scale(f, LATER, 10.0), "unrecorded_split", "error", "adjusted_close"),
    ("split with spin-off unadjusted", lambda f: _set(_scale(_scale(f, LATER, 2.0, PX), LATER, 0.6, ("adjusted_close",)), 10, split_coefficient=0.5),
     "split_without_move", "error", "split_coefficient"),
    ("split without raw move", lambda f: _set(f, 10, split_coefficient=2.0), "split_without_move", "info", "split_coefficient"),
    ("small dividend unadjusted", lambda f: _set(f, 10, dividend_amount=1.0), "dividend_without_adjustment", "warning", "dividend_amount"),
    ("large dividend unadjusted", lambda f: _set(f, 10, dividend_amount=10.0), "dividend_without_adjustment", "error", "dividend_amount"),
    ("dividend above close", lambda f: _set(f, 10, dividend_amount=500.0), "dividend_exceeds_close", "error", "dividend_amount"),
    ("factor blip", lambda f: _scale(f, LATER, 1.01, ("adjusted_close",)), "adjustment_without_event", "info", "adjusted_close"),
    ("adjustment without split", lambda f: _scale(f, LATER, 1.45, ("adjusted_close",)), "adjustment_without_event", "error", "adjusted_close"),
    ("first row factor", lambda f: _set(f, 0, adjusted_close=f.loc[0, "adjusted_close"] * 0.5), "first_row_inconsistent", "error", "adjusted_close"),
]


@pytest.mark.parametrize("name, mutate, check, severity, field", CASES, ids=[c[0] for c in CASES])
def test_each_rule_finds_its_fault_with_its_severity(ohlcv, name, mutate, check, severity, field):
    bad = mutate(ohlcv.copy())
    calendar = pd.DatetimeIndex(ohlcv["date"].unique())
    report = data.validate_prices(bad, calendar=calendar)
    found = report.issues[report.issues["check"] == check]
    assert len(found) == 1, report.issues
    row = found.iloc[0]
    assert (row["severity"], row["field"], row["symbol"]) == (severity, field, "AAA")
    assert isinstance(row["reason"], str) and row["reason"]
    assert set(report.issues["symbol"]) == {"AAA"}  # BBB is clean
    if severity == "error":
        with pytest.raises(data.DataValidationError) as exc:
            data.validate_prices(bad, calendar=calendar, strict=True)
        assert "symbol='AAA'" in str(exc.value) and "(error)" in str(exc.value)
    else:
        data.validate_prices(bad, calendar=calendar, strict=True)  # only errors raise


def test_clean_frame_has_no_findings_and_a_true_split_is_not_flagged(ohlcv):
    assert data.validate_prices(ohlcv).ok
    f = ohlcv.copy()
    f.loc[10:29, PX] /= 2.0  # 2-for-1 split on day 10: raw halves, adjusted continuous
    f.loc[10:29, "adjusted_close"] = f.loc[10:29, "close"] * 0.9  # backward adjustment: the factor
    f.loc[:9, "adjusted_close"] = f.loc[:9, "close"] * 0.45  # changes before the split day
    f.loc[10, "split_coefficient"] = 2.0
    assert data.validate_prices(f).ok
    g = ohlcv.copy()  # a dividend with the store's factor change close_t / (close_t + D)
    d = 0.8
    g.loc[:9, "adjusted_close"] = g.loc[:9, "close"] * 0.9 * g.loc[10, "close"] / (g.loc[10, "close"] + d)
    g.loc[10, "dividend_amount"] = d
    assert data.validate_prices(g).ok


def test_market_wide_moves_are_warnings_not_errors():
    f = make_ohlcv(symbols=[f"S{i:02d}" for i in range(30)], days=30, seed=3)
    day = f["date"].drop_duplicates().iloc[10]
    later = f["date"] >= day
    crash = f.copy()
    for c in (*PX, "adjusted_close"):
        crash.loc[later, c] *= 0.9  # everyone falls 10% that day
    s0 = crash["symbol"] == "S00"
    for c in (*PX, "adjusted_close"):
        crash.loc[s0 & later, c] *= 0.5 / 0.9  # S00 falls 50%: looks like a 2-for-1 split
    found = data.validate_prices(crash).issues.query("check == 'unrecorded_split'")
    assert len(found) == 1 and found.iloc[0]["severity"] == "warning" and "market-wide" in found.iloc[0]["reason"]
    alone = f.copy()
    for c in (*PX, "adjusted_close"):
        alone.loc[s0 & later, c] *= 0.5
    found = data.validate_prices(alone).issues.query("check == 'unrecorded_split'")
    assert len(found) == 1 and found.iloc[0]["severity"] == "error"
    # a few symbols of a wide panel judged with the panel's market moves
    market = data.market_moves(crash)
    few = crash[crash["symbol"].isin(["S00", "S01"])]
    assert data.validate_prices(few).issues.query("check == 'unrecorded_split'")["severity"].tolist() == ["error"]
    assert data.validate_prices(few, market=market).issues.query("check == 'unrecorded_split'")["severity"].tolist() == ["warning"]


def test_summary_and_counts(ohlcv):
    report = data.validate_prices(_set(_set(ohlcv, 5, volume=0), 6, volume=-1))
    s = report.summary()
    assert s.loc["non_positive_volume", ["issues", "error", "warning", "info"]].tolist() == [2, 1, 1, 0]
    assert set(s.index) == set(data.CHECKS)
    assert report.counts()[["check", "severity", "issues"]].values.tolist() == [
        ["non_positive_volume", "error", 1], ["non_positive_volume", "warning", 1]]
    assert report.n_errors == 1


@pytest.mark.slow
def test_committed_store_findings_by_check_and_severity():
    """The committed store's findings (the README, "Validation: checks and severities", explains each error)."""
    _, report = data.load_prices()
    counts = {(r.check, r.severity): r.issues for r in report.counts().itertuples()}
    errors = {k[0]: v for k, v in counts.items() if k[1] == "error"}
    assert errors == {
        "bad_row": 3, "unrecorded_split": 4, "split_without_move": 4, "dividend_without_adjustment": 1,
        "dividend_exceeds_close": 3, "adjustment_without_event": 3, "first_row_inconsistent": 1,
    }
    assert counts[("stale_quote", "warning")] == 186 and counts[("large_move", "warning")] == 43
    assert ("duplicate_row", "error") not in counts and ("ohlc_inconsistent", "error") not in counts
    e = report.issues[report.issues["severity"] == "error"]
    assert {("MSI", "2011-01-04"), ("KSU", "2000-07-13"), ("WST", "2004-09-30"), ("ANTM", "2005-06-02")} <= {
        (s, str(pd.Timestamp(d).date())) for s, d in zip(e["symbol"], e["date"], strict=True)}


def test_bars_per_year_threads_through_annualisation():
    from kit import analytics, features

    rng = np.random.default_rng(0)
    r = pd.Series(rng.normal(0.001, 0.01, 300), index=pd.bdate_range("2020-01-01", periods=300))
    assert analytics.sharpe_ratio(r, 52) == pytest.approx(analytics.sharpe_ratio(r) * np.sqrt(52 / 252), rel=1e-12)
    daily = analytics.performance_table({"x": r})
    weekly = analytics.performance_table({"x": r}, bars_per_year=52)
    assert weekly.loc["x", "annual_volatility"] == pytest.approx(daily.loc["x", "annual_volatility"] * np.sqrt(52 / 252), rel=1e-12)
    assert weekly.loc["x", "sharpe_ci_high"] == pytest.approx(daily.loc["x", "sharpe_ci_high"] * np.sqrt(52 / 252), rel=1e-12)
    v = features.ex_ante_vol(r.to_frame(), bars_per_year=52)
    np.testing.assert_allclose(v.to_numpy(), features.ex_ante_vol(r.to_frame()).to_numpy() * np.sqrt(52 / 252), equal_nan=True)
