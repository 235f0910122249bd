"""The cleaning policy: parsing, each action, and a planted bad row that must not reach any training
target."""

import numpy as np
import pandas as pd
import pytest

from kit import data, features
from tests.conftest import make_ohlcv


def test_policy_from_param():
    assert data.CleaningPolicy.from_param("default") == data.CleaningPolicy()
    assert data.CleaningPolicy().action("bad_row", "error") == "mask"
    assert data.CleaningPolicy().action("large_move", "warning") == "keep"
    assert data.CleaningPolicy().action("duplicate_row", "error") == "drop"
    none = data.CleaningPolicy.from_param("none")
    assert {none.action(c, s) for c in data.CHECKS for s in data.SEVERITIES} == {"keep"}
    p = data.CleaningPolicy.from_param({"error": "exclude", "mask_days": 3, "checks": {"stale_quote": "drop"}})
    assert (p.action("bad_row", "error"), p.action("stale_quote", "warning"), p.mask_days) == ("exclude", "drop", 3)
    with pytest.raises(ValueError, match=r"unknown key 'mask_day' \(did you mean 'mask_days'\?\)"):
        data.CleaningPolicy.from_param({"mask_day": 3})
    with pytest.raises(ValueError, match=r"unknown check 'bad_rows' in 'checks' \(did you mean 'bad_row'\?\)"):
        data.CleaningPolicy.from_param({"checks": {"bad_rows": "drop"}})
    with pytest.raises(ValueError, match=r"error must be one of \['keep', 'drop', 'mask', 'exclude'\], got 'hide'"):
        data.CleaningPolicy.from_param({"error": "hide"})


@pytest.mark.parametrize(
    "policy, removed_dates",
    [
        ({"error": "keep"}, []),
        ({"error": "drop"}, [10]),
        ({"error": "mask", "mask_days": 2}, [8, 9, 10, 11, 12]),
        ({"error": "exclude"}, list(range(10, 30))),
    ],
)
def test_each_action(ohlcv, policy, removed_dates):
    bad = ohlcv.copy()
    for c in ("open", "high", "low", "close", "adjusted_close"):
        bad.loc[10, c] *= 1.6  # AAA day 10: a bad row (error)
    report = data.validate_prices(bad)
    assert report.issues[["check", "severity"]].values.tolist() == [["large_move", "warning"], ["bad_row", "error"]]
    cleaned, rep = data.clean_prices(bad, report, {**policy, "checks": {}})
    aaa_dates = ohlcv.loc[ohlcv["symbol"] == "AAA", "date"].reset_index(drop=True)
    gone = sorted(set(aaa_dates) - set(cleaned.loc[cleaned["symbol"] == "AAA", "date"]))
    assert gone == [aaa_dates[i] for i in removed_dates]
    assert (cleaned["symbol"] == "BBB").sum() == 30  # the other symbol untouched
    assert rep.rows_before - rep.rows_after == len(removed_dates)
    if removed_dates:
        row = rep.actions.iloc[0]
        assert (row["check"], row["symbol"], row["rows_removed"]) == ("bad_row", "AAA", len(removed_dates))
        assert row["first_date"] == aaa_dates[removed_dates[0]] and row["last_date"] == aaa_dates[removed_dates[-1]]
        assert rep.summary()[["check", "action", "rows_removed"]].values.tolist() == [["bad_row", policy["error"], len(removed_dates)]]
    else:
        assert rep.actions.empty


def test_duplicates_drop_the_second_row(ohlcv):
    dup = pd.concat([ohlcv, ohlcv.iloc[[3]].assign(volume=7)], ignore_index=True)
    cleaned, rep = data.clean_prices(dup, data.validate_prices(dup))
    assert len(cleaned) == len(ohlcv) and 7 not in cleaned["volume"].to_numpy()
    assert rep.actions[["check", "action", "rows_removed"]].values.tolist() == [["duplicate_row", "drop", 1]]


def test_planted_bad_row_reaches_no_training_target():
    """A bad row and an unrecorded split planted in a small panel: after the default policy, every
    finite target (next-day, 1-, 5- and 21-day forward returns; the DMN target's return) equals the
    true panel's, so nothing of the bad prices reaches training."""
    true = make_ohlcv(symbols=("AAA", "BBB", "CCC"), days=400, seed=7)
    bad = true.copy()
    a = bad.index[bad["symbol"] == "AAA"]
    for c in ("open", "high", "low", "close", "adjusted_close"):
        bad.loc[a[200], c] *= 1.6  # one bad row
    b = bad.index[bad["symbol"] == "BBB"]
    for c in ("open", "high", "low", "close", "adjusted_close"):
        bad.loc[b[300:], c] *= 0.5  # an unrecorded 2-for-1 split: a -50% adjusted "return"
    report = data.validate_prices(bad)
    assert set(report.issues.loc[report.issues["severity"] == "error", "check"]) == {"bad_row", "unrecorded_split"}

    def closes(raw):
        return data.to_wide(data.adjust_prices(raw), "close")

    truth = closes(true)
    dirty = closes(bad)
    cleaned, rep = data.clean_prices(bad, report)
    clean = closes(cleaned).reindex(index=truth.index)
    assert rep.rows_before - rep.rows_after == 2 * 43  # 21 days each side of both findings
    # without cleaning the planted rows reach the targets
    assert np.nanmin(features.forward_returns(dirty, (1,)).values) < -0.45
    assert np.nanmax(features.forward_returns(dirty, (1,)).values) > 0.55
    for h in (1, 5, 21):
        got = features.forward_returns(clean, (h,)).values[..., 0]
        want = features.forward_returns(truth, (h,)).values[..., 0]
        ok = np.isfinite(got)
        assert ok.sum() > 0.8 * np.isfinite(want).sum()
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12)
    target, vol = features.next_day_target(clean)
    r_next = features.daily_returns(clean).shift(-1)
    finite = np.isfinite(target.to_numpy())
    np.testing.assert_allclose(r_next.to_numpy()[finite], features.daily_returns(truth).shift(-1).to_numpy()[finite], rtol=1e-12)
    assert np.nanmax(np.abs(vol.to_numpy())) < 1.0  # the -50% day is not in any volatility either


def test_load_universe_masks_the_msi_spin_off_by_default():
    u = data.load_universe(None, ["AAPL", "MSI"], start="2010-06-01", end="2011-06-30", cleaning="default")
    prices, report, symbols = u  # unpacks as before
    assert symbols == ["AAPL", "MSI"]
    assert ("split_without_move", "error") in set(zip(report.issues["check"], report.issues["severity"], strict=True))
    r = features.daily_returns(data.to_wide(prices, "close"))
    assert r["MSI"].min() > -0.2  # the -37.6% adjusted return of 2011-01-04 is gone
    acts = u.cleaning.actions
    assert acts[["check", "symbol", "action", "rows_removed"]].values.tolist() == [["split_without_move", "MSI", "mask", 43]]
    raw_u = data.load_universe(None, ["AAPL", "MSI"], start="2010-06-01", end="2011-06-30", cleaning="none")
    assert features.daily_returns(data.to_wide(raw_u.prices, "close"))["MSI"].min() < -0.37
    d = u.cleaning.to_dict()
    assert d["rows_removed"] == 43 and d["actions"][0]["date"] == "2011-01-04" and d["policy"]["mask_days"] == 21
