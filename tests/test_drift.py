"""kit.analytics.drift: PSI and KS against hand-computed cases and plain references, Holm's correction,
the samples of a feature panel, feature and performance drift (planted drift found, undrifted data
passed; the day-clustered test against a hand computation), the drift table of kit.store.monitoring,
and (slow) the false-positive rate over 1,000 undrifted draws held to a binomial bound.

The drift table tests run on SQLite, and on PostgreSQL when ``KIT_DB_URL`` names one
(``bash scripts/postgres_test.sh tests/test_drift.py``).
"""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from kit.analytics import drift
from kit.store import monitoring as M
from tests._ledger_worker import fresh_db

# ------------------------------------------------------------------------------------------------
# PSI, KS, Holm
# ------------------------------------------------------------------------------------------------


def test_psi_hand_computed_with_an_empty_bin_epsilon():
    expected = np.arange(100.0)  # quartile edges 24.75, 49.5, 74.25: 25 values per bin
    actual = np.array([0, 1, 2, 3, 4, 90, 91, 92, 93, 94], dtype=float)  # 5 in the first bin, 5 in the last, none between
    e, a, eps = 0.25, 0.5, 1e-4
    hand = 2 * (a - e) * math.log(a / e) + 2 * (eps - e) * math.log(eps / e)
    assert drift.population_stability_index(expected, actual, bins=4) == pytest.approx(hand, rel=1e-12)
    assert drift.population_stability_index(expected, expected, bins=4) == pytest.approx(0.0, abs=1e-15)


def _psi_reference(expected, actual, bins, eps=1e-4):
    """Plain pandas: quantile edges of the reference, left-closed bins, empty bins at eps."""
    inner = pd.Series(expected).quantile([i / bins for i in range(1, bins)]).drop_duplicates().to_numpy()
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    e = pd.Series(pd.cut(expected, edges, right=False, labels=False)).value_counts(normalize=True).reindex(range(len(edges) - 1), fill_value=0.0).to_numpy()
    a = pd.Series(pd.cut(actual, edges, right=False, labels=False)).value_counts(normalize=True).reindex(range(len(edges) - 1), fill_value=0.0).to_numpy()
    e, a = np.where(e > 0, e, eps), np.where(a > 0, a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


# continuous values and small integers (ties, merged quantile edges)
finite = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False), st.integers(-3, 3).map(float))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(20, 200), elements=finite), hnp.arrays(np.float64, st.integers(5, 100), elements=finite),
       st.integers(2, 12))
def test_psi_matches_a_pandas_reference_and_is_non_negative(expected, actual, bins):
    got = drift.population_stability_index(expected, actual, bins=bins)
    assert got >= 0
    assert got == pytest.approx(_psi_reference(expected, actual, bins), rel=1e-9, abs=1e-12)


def test_psi_and_ks_refuse_bad_input_with_the_field_named():
    with pytest.raises(ValueError, match="actual has 1 non-finite"):
        drift.population_stability_index([1.0, 2.0, 3.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="expected is empty"):
        drift.ks_test([], [1.0])
    with pytest.raises(ValueError, match="bins must be"):
        drift.population_stability_index([1.0, 2.0], [1.0], bins=1)


def test_psi_null_p_value_follows_the_chi2_approximation():
    # psi / (1/n + 1/m) = 9 with 9 degrees of freedom: the chi2(9) survival function at 9
    assert drift.psi_null_p_value(9 * (1 / 100 + 1 / 50), 100, 50, bins=10) == pytest.approx(stats.chi2.sf(9, 9))


def test_ks_hand_cases():
    r = drift.ks_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert r.statistic == 1.0
    assert r.p_value == pytest.approx(0.1)  # exact: 2 / C(6, 3)
    assert drift.ks_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).statistic == 0.0


def test_holm_hand_computed():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    np.testing.assert_allclose(drift.holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(drift.holm_adjust([0.5, 0.9]), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drift.holm_adjust([0.1, 1.5])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_matches_statsmodels(p):
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    np.testing.assert_allclose(drift.holm_adjust(p), multitest.multipletests(p, method="holm")[1], rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# feature drift
# ------------------------------------------------------------------------------------------------

FEATURES = ["ret_1", "ret_21", "ret_63", "macd_8_24", "macd_16_48"]


def _panel(n: int, seed: int, shift: dict | None = None) -> pd.DataFrame:
    """(n, 5) correlated standard-normal feature rows, with mean shifts in sd units."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(n, 1))
    x = 0.5 * common + math.sqrt(0.75) * rng.normal(size=(n, len(FEATURES)))
    df = pd.DataFrame(x, columns=FEATURES)
    for f, s in (shift or {}).items():
        df[f] += s
    return df


def test_planted_drift_is_found_in_that_feature_only():
    train, recent = _panel(2000, 1), _panel(250, 2, shift={"ret_21": 0.5})
    r = drift.feature_drift(train, recent)
    assert list(r.index) == FEATURES
    assert r.loc["ret_21", "verdict"] == "drift"
    assert (r.drop(index="ret_21")["verdict"] == "ok").all()
    assert r.loc["ret_21", "ks_p_adjusted"] < 0.05 and r.loc["ret_21", "psi"] > 0.1
    checks = drift.feature_drift_checks(r, "2024-03-28")
    summary = checks[-1]
    assert (summary.check, summary.subject, summary.verdict, summary.value, summary.n) == ("feature_drift", "*", "drift", 1.0, 5)
    assert summary.p_value == pytest.approx(r["ks_p_adjusted"].min())
    assert {(c.check, c.subject) for c in checks[:-1]} == {(k, f) for f in FEATURES for k in ("psi", "ks")}
    assert all(c.as_of == dt.date(2024, 3, 28) for c in checks)


def test_undrifted_panel_gives_no_drift_verdict():
    r = drift.feature_drift(_panel(2000, 3), _panel(250, 4))
    assert (r["verdict"] == "ok").all()
    assert drift.feature_drift_checks(r, "2024-03-28")[-1].verdict == "ok"


def test_psi_bins_shrink_with_a_small_recent_sample():
    train = _panel(2000, 21)
    small = drift.feature_drift(train, _panel(20, 22))
    assert set(small["psi_bins"]) == {4}  # 20 values: 5 a bin
    assert (small["psi"] == [drift.population_stability_index(train[f], _panel(20, 22)[f], bins=4) for f in FEATURES]).all()
    assert set(drift.feature_drift(train, _panel(60, 23))["psi_bins"]) == {10}
    assert set(drift.feature_drift(train, _panel(60, 23), min_per_bin=10)["psi_bins"]) == {6}
    # undrifted, 50 draws of 20 values: with 10 bins the mean PSI is mostly empty-bin epsilons, far above
    # both the chi2 approximation's mean (1/n + 1/m)(B - 1) and the 0.25 threshold; with 4 bins it is near its own
    ten, four = [], []
    for seed in range(50):
        recent = _panel(20, 100 + seed)
        ten += [drift.population_stability_index(train[f], recent[f], bins=10) for f in FEATURES]
        four += list(drift.feature_drift(train, recent)["psi"])
    assert np.mean(ten) > 2 * (1 / 2000 + 1 / 20) * 9 and np.mean(ten) > 0.5
    assert np.mean(four) < 0.25 and np.mean(four) == pytest.approx((1 / 2000 + 1 / 20) * 3, rel=0.5)
    with pytest.raises(ValueError, match="min_per_bin"):
        drift.feature_drift(train, _panel(20, 22), min_per_bin=0)


def test_holm_adjusted_p_values_are_used_for_the_verdict():
    r = drift.feature_drift(_panel(500, 5), _panel(60, 6, shift={"ret_1": 0.3}))
    np.testing.assert_allclose(r["ks_p_adjusted"], drift.holm_adjust(r["ks_p_value"]))
    assert (r["ks_drift"] == (r["ks_p_adjusted"] < 0.05)).all()
    assert (r["ks_p_adjusted"] >= r["ks_p_value"]).all()


def test_require_psi_needs_both_a_significant_and_a_large_shift():
    train, recent = _panel(5000, 7), _panel(5000, 8, shift={"ret_1": 0.15, "ret_63": 1.0})
    plain = drift.feature_drift(train, recent)
    both = drift.feature_drift(train, recent, require_psi=True)
    # with 5000 rows a 0.15 sd shift is significant but small (PSI about 0.02): only require_psi drops it
    assert plain.loc["ret_1", "verdict"] == "drift" and plain.loc["ret_1", "psi"] < 0.25
    assert both.loc["ret_1", "verdict"] == "ok"
    assert both.loc["ret_63", "verdict"] == "drift"


def test_nan_rows_are_dropped_per_feature_and_short_features_not_tested():
    train, recent = _panel(500, 9), _panel(60, 10, shift={"ret_63": 2.0})
    recent.loc[:50, "macd_8_24"] = np.nan  # 9 values left < min_obs 20
    train.loc[:100, "ret_1"] = np.nan  # warm-up
    r = drift.feature_drift(train, recent)
    assert r.loc["macd_8_24", "verdict"] == "insufficient_data" and np.isnan(r.loc["macd_8_24", "ks_p_adjusted"])
    assert r.loc["ret_1", "n_train"] == 399
    assert r.attrs["checked"] == 4
    np.testing.assert_allclose(r["ks_p_adjusted"].dropna(), drift.holm_adjust(r["ks_p_value"].dropna()))  # 4 tests in the family
    checks = drift.feature_drift_checks(r, "2024-01-02")
    assert [c.verdict for c in checks if c.subject == "macd_8_24"] == ["insufficient_data"] * 2
    assert checks[-1].n == 4 and checks[-1].verdict == "drift"


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"recent": pd.DataFrame({"other": [1.0]})}, ValueError, "recent has feature column"),
        ({"recent": pd.DataFrame({"ret_1": [np.inf] * 30})}, ValueError, r"recent\['ret_1'\] has 30 infinite"),
        ({"recent": pd.DataFrame({"ret_1": ["a"] * 30})}, ValueError, r"recent\['ret_1'\] must be numeric"),
        ({"recent": np.zeros((30, 5))}, TypeError, "recent must be a"),
        ({"ks_alpha": 0.0}, ValueError, "ks_alpha"),
        ({"psi_threshold": -1}, ValueError, "psi_threshold"),
        ({"min_obs": 1}, ValueError, "min_obs"),
    ],
)
def test_feature_drift_bad_input(kwargs, exc, match):
    args = {"train_features": _panel(100, 0), "recent": _panel(30, 1), **kwargs}
    with pytest.raises(exc, match=match):
        drift.feature_drift(**args)


# ------------------------------------------------------------------------------------------------
# performance drift
# ------------------------------------------------------------------------------------------------


def _outcomes(model_id, label, correct, ape=None, start="2024-01-02", per_day=1):
    """Ledger-like outcomes: ``correct`` a list of bools/None, one per row, ``per_day`` rows a day."""
    n = len(correct)
    days = pd.bdate_range(start, periods=math.ceil(n / per_day) + 1)
    run = np.repeat(days[:-1], per_day)[:n]
    tgt = np.repeat(days[1:], per_day)[:n]
    return pd.DataFrame({"model_id": model_id, "label": label, "symbol": "AAA", "run_date": run, "target_date": tgt,
                         "direction_correct": pd.array(correct, dtype="boolean"),
                         "pct_error": np.nan if ape is None else np.asarray(ape, dtype=float)})


def _binom_less(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_performance_drift_hand_computed_binomial_and_t_test():
    rng = np.random.default_rng(0)
    ape = rng.uniform(0.0, 0.12, 30)
    correct = [True] * 10 + [False] * 20
    o = _outcomes(1, "m@1", correct, ape * np.where(rng.random(30) < 0.5, -1, 1))
    r = drift.performance_drift(o, window=30)
    acc = r.set_index("check").loc["direction_accuracy"]
    assert acc["value"] == pytest.approx(10 / 30) and acc["n"] == 30
    assert acc["p_value"] == pytest.approx(_binom_less(10, 30, 0.52), rel=1e-9)
    assert acc["verdict"] == ("drift" if _binom_less(10, 30, 0.52) < 0.05 else "ok") == "drift"
    mape = r.set_index("check").loc["mape"]
    t = (ape.mean() - 0.05) / (ape.std(ddof=1) / math.sqrt(30))
    assert mape["value"] == pytest.approx(ape.mean())
    assert mape["p_value"] == pytest.approx(stats.t.sf(t, 29), rel=1e-9)
    assert mape["verdict"] == "drift"  # mean about 0.06 > 0.05 with 30 errors: t about 3
    assert set(r["subject"]) == {"m@1"} and (r["as_of"] == o["target_date"].max().date()).all()


def test_accuracy_at_the_gate_is_not_drift_and_far_below_is():
    at_gate = _outcomes(1, "ok", [True] * 52 + [False] * 48, start="2023-06-01", per_day=4)
    below = _outcomes(2, "bad", list(np.random.default_rng(3).permutation([True] * 35 + [False] * 65)), start="2023-06-01", per_day=4)
    r = drift.performance_drift(pd.concat([at_gate, below]), window=30).set_index(["subject", "check"])
    assert r.loc[("ok", "direction_accuracy"), "verdict"] == "ok"
    assert r.loc[("bad", "direction_accuracy"), "verdict"] == "drift"
    assert ("ok", "mape") not in r.index  # a position model (no forecasts) has no MAPE check


def test_performance_drift_window_and_no_look_ahead():
    o = _outcomes(1, "m", [False] * 40 + [True] * 30, start="2024-01-02")  # 70 days, one call a day
    r = drift.performance_drift(o, window=30).set_index("check")
    assert r.loc["direction_accuracy", "value"] == 1.0 and r.loc["direction_accuracy", "n"] == 30
    # as_of on the 40th target date: the outcome of the 40th run date is known, the 41st not yet
    as_of = o["target_date"].iloc[39]
    r = drift.performance_drift(o, window=30, as_of=as_of).set_index("check")
    assert r.loc["direction_accuracy", "value"] == 0.0 and r.loc["direction_accuracy", "n"] == 30
    assert r.loc["direction_accuracy", "as_of"] == as_of.date()


def test_no_calls_is_insufficient_data_not_a_verdict():
    o = _outcomes(1, "flat", [None] * 5, ape=[0.01] * 5)
    r = drift.performance_drift(o).set_index("check")
    assert r.loc["direction_accuracy", "verdict"] == "insufficient_data" and r.loc["direction_accuracy", "n"] == 0
    assert r.loc["mape", "verdict"] == "ok"  # 5 identical errors of 1%: no spread, below 5%
    assert drift.checks_from_frame(r.reset_index())[0].value is None


def test_performance_drift_on_a_real_ledger(tmp_path):
    from kit.store import ledger
    from tests._ledger_worker import add_model, predictions_for, synthetic_close

    with fresh_db(tmp_path) as url:
        close = synthetic_close(days=50)
        model = add_model(url, tmp_path)
        p = predictions_for(close, close.columns, close.index[:45])
        ledger.snapshot(p, close, model, db=url)
        ledger.fillback(close, db=url)
        o = ledger.outcomes(db=url)
        r = drift.performance_drift(o, window=30).set_index("check")
        board = ledger.leaderboard(window=30, by="model", db=url, as_of=o["run_date"].max())
        # the same window: the leaderboard's last 30 run dates up to the last filled one
        assert r.loc["direction_accuracy", "n"] == board["n_calls"].iloc[0]
        assert r.loc["direction_accuracy", "value"] == pytest.approx(board["direction_accuracy"].iloc[0])
        assert r.loc["mape", "value"] == pytest.approx(board["mape"].iloc[0])
        assert r.loc["direction_accuracy", "subject"] == o["label"].iloc[0]


def test_performance_drift_bad_input():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['pct_error'\]"):
        drift.performance_drift(pd.DataFrame({"model_id": [1], "run_date": ["2024-01-02"], "direction_correct": [True]}))
    with pytest.raises(ValueError, match="alpha"):
        drift.performance_drift(_outcomes(1, "m", [True]), alpha=1.5)
    with pytest.raises(TypeError, match="outcomes must be a DataFrame"):
        drift.performance_drift([1, 2])


def test_several_calls_a_day_use_the_day_clustered_test_hand_computed():
    # 3 days: 3 of 4, 1 of 4, 4 of 4 correct; pooled 8/12
    o = _outcomes(1, "m", [True, True, True, False, True, False, False, False, True, True, True, True], per_day=4)
    r = drift.performance_drift(o, min_direction_accuracy=0.52).set_index("check").loc["direction_accuracy"]
    k, n = np.array([3.0, 1.0, 4.0]), np.array([4.0, 4.0, 4.0])
    p = k.sum() / n.sum()
    se = math.sqrt(3 / 2 * np.sum((k - p * n) ** 2)) / n.sum()
    assert r["value"] == pytest.approx(8 / 12) and r["n"] == 12
    assert r["p_value"] == pytest.approx(stats.t.cdf((p - 0.52) / se, 2), rel=1e-12)
    # equal calls a day: the same as a one-sample t-test of the daily accuracies
    assert r["p_value"] == pytest.approx(stats.ttest_1samp(k / n, 0.52, alternative="less").pvalue, rel=1e-9)


def test_calls_correlated_within_days_are_not_drift_for_the_clustered_test():
    """30 days of 100 calls, every call of a day right or wrong together (one market move), 14 right
    days of 30 (pooled 0.467): the binomial test on 3,000 calls would call it drift (p ~ 1e-9), the
    day-clustered test sees 30 independent observations and does not."""
    days = [True] * 14 + [False] * 16
    correct = list(np.repeat(np.random.default_rng(5).permutation(days), 100))
    o = _outcomes(1, "m", correct, per_day=100)
    r = drift.performance_drift(o).set_index("check").loc["direction_accuracy"]
    assert r["value"] == pytest.approx(14 / 30) and r["n"] == 3000
    assert stats.binomtest(1400, 3000, 0.52, alternative="less").pvalue < 1e-8
    assert r["p_value"] > 0.2 and r["verdict"] == "ok"
    assert r["p_value"] == pytest.approx(stats.ttest_1samp(np.array(days, float), 0.52, alternative="less").pvalue, rel=1e-9)


def test_one_day_of_several_calls_is_insufficient_data():
    o = _outcomes(1, "m", [True, False, True], ape=[0.01, 0.02, 0.03], per_day=3)
    r = drift.performance_drift(o).set_index("check")
    assert set(r["verdict"]) == {"insufficient_data"} and r.loc["direction_accuracy", "value"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------------
# samples of a feature panel
# ------------------------------------------------------------------------------------------------


def _feature_array(T=300, N=3, F=2, seed=0):
    from kit.features.sets import FeatureArray

    rng = np.random.default_rng(seed)
    v = rng.normal(size=(T, N, F))
    v[:30, 0, :] = np.nan  # symbol 0 listed late
    return FeatureArray(v, [f"f{i}" for i in range(F)], pd.bdate_range("2020-01-01", periods=T), pd.Index(["A", "B", "C"][:N]))


def test_window_samples_takes_every_stride_th_cross_section_and_nothing_after_as_of():
    fa = _feature_array()
    idx = fa.index
    as_of = idx[250]
    train, recent = drift.window_samples(fa, (idx[10], idx[200]), as_of, recent_days=40, stride=10)
    assert list(recent.index.get_level_values("date").unique()) == list(idx[[220, 230, 240, 250]])
    tdates = train.index.get_level_values("date").unique()
    assert tdates[-1] == idx[200] and tdates[0] == idx[10] and all(np.diff(idx.get_indexer(tdates)) == 10)
    assert len(train) == 3 * len(tdates) - 2  # symbol A's rows before its listing (dates 10 and 20) dropped
    np.testing.assert_array_equal(recent.loc[(idx[250], "B")].to_numpy(), fa.values[250, 1, :])
    _, r2 = drift.window_samples(fa, (idx[10], idx[200]), idx[250] + pd.Timedelta(hours=5), recent_days=1, stride=1, names=["f1"])
    assert list(r2.columns) == ["f1"] and set(r2.index.get_level_values("date")) == {idx[250]}


def test_demeaned_samples_ignore_a_move_every_stock_shares_and_see_stocks_drifting_apart():
    from kit.features.sets import FeatureArray

    rng = np.random.default_rng(4)
    T, N = 400, 60
    v = rng.normal(size=(T, N, 1))
    v[:, :, 0] += rng.normal(size=(T, 1))  # a common factor on every date: the pooled spread is wider than one day's
    idx = pd.bdate_range("2020-01-01", periods=T)
    shared = v.copy()
    shared[-1] += 3.0  # the whole market moves on the last day
    apart = v.copy()
    apart[-1, : N // 2] += 3.0  # half the stocks move away from the other half
    apart[-1, N // 2 :] -= 3.0
    period = (idx[0], idx[300])
    for values, levels, demeaned in ((shared, "drift", "ok"), (apart, "drift", "drift")):
        fa = FeatureArray(values, ["f"], idx, pd.Index([f"S{i}" for i in range(N)]))
        for demean, want in ((False, levels), (True, demeaned)):
            train, recent = drift.window_samples(fa, period, idx[-1], recent_days=1, stride=5, demean=demean)
            assert len(recent) == N
            if demean:
                assert abs(recent["f"].mean()) < 1e-12 and abs(train.groupby(level="date")["f"].mean()).max() < 1e-12
            assert drift.feature_drift(train, recent).loc["f", "verdict"] == want, (demean, want)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"recent_days": 0}, "recent_days must be a positive integer"),
        ({"stride": 1.5}, "stride must be a positive integer"),
        ({"names": ["nope"]}, r"feature\(s\) \['nope'\] not in"),
        ({"as_of": "2019-01-01"}, "training window ends"),
        ({"train_period": ("2020-06-01", "2020-03-01")}, "not in order"),
        ({"train_period": ("2018-01-01", "2018-06-01"), "as_of": "2020-06-01"}, "holds no date"),
        ({"train_period": ("x", "y")}, "train_period must be two dates"),
    ],
)
def test_window_samples_bad_input(kw, match):
    fa = _feature_array()
    args = {"train_period": (fa.index[0], fa.index[100]), "as_of": fa.index[200], **kw}
    with pytest.raises(ValueError, match=match):
        drift.window_samples(fa, args.pop("train_period"), args.pop("as_of"), **args)


def test_drift_check_validates_its_fields():
    with pytest.raises(ValueError, match="verdict must be one of"):
        drift.DriftCheck("ks", "f", 0.1, 0.05, 0.5, "maybe", "2024-01-02")
    with pytest.raises(ValueError, match="p_value must be in"):
        drift.DriftCheck("ks", "f", 0.1, 0.05, 1.5, "ok", "2024-01-02")
    for bad in (None, "not a date"):
        with pytest.raises(ValueError, match="as_of must be a date"):
            drift.DriftCheck("ks", "f", 0.1, 0.05, 0.5, "ok", bad)
    c = drift.DriftCheck("psi", "f", float("nan"), 0.25, None, "ok", pd.Timestamp("2024-01-02 17:00"), n=np.int64(3))
    assert c.value is None and c.as_of == dt.date(2024, 1, 2) and type(c.n) is int


# ------------------------------------------------------------------------------------------------
# storage
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    with fresh_db(tmp_path) as url:
        yield url


def _checks(as_of="2024-03-28", shift=0.8):
    r = drift.feature_drift(_panel(1000, 11), _panel(120, 12, shift={"ret_1": shift}))
    return drift.feature_drift_checks(r, as_of)


def _load(db, **kw):
    return M.load_checks(account="a", db=db, **kw)


def test_record_checks_is_idempotent_per_key_and_replaces_values(engine):
    checks = _checks()
    assert M.record_checks(checks, account="a", scope="s", model_id=7, db=engine) == 11
    assert M.record_checks(checks, account="a", scope="s", model_id=7, db=engine) == 11
    got = _load(engine)
    assert len(got) == 11 and set(got["model_id"]) == {7} and set(got["scope"]) == {"s"}
    assert got.set_index(["check", "subject"]).loc[("feature_drift", "*"), "verdict"] == "drift"
    # the day's checks re-run on corrected data: the rows are replaced, not added
    M.record_checks(_checks(shift=0.0), account="a", scope="s", db=engine)
    got = _load(engine)
    assert len(got) == 11 and got.set_index(["check", "subject"]).loc[("feature_drift", "*"), "verdict"] == "ok"
    # another day adds rows; another account keeps its own; the filters select
    M.record_checks(_checks(as_of="2024-04-01"), account="a", scope="s", db=engine)
    M.record_checks(_checks(as_of="2024-04-01"), account="b", scope="s", db=engine)
    assert len(_load(engine)) == 22 and len(M.load_checks(scope="s", db=engine)) == 33
    assert len(_load(engine, as_of="2024-04-01", check="feature_drift")) == 1
    assert len(_load(engine, start="2024-03-29", check=["psi", "ks"])) == 10
    assert len(_load(engine, end="2024-03-28")) == 11
    got = _load(engine, as_of="2024-04-01", check="ks")
    assert list(got["subject"]) == sorted(FEATURES)  # sorted by as_of, check, subject
    row = got.set_index("subject").loc["ret_1"]
    first = next(c for c in _checks(as_of="2024-04-01") if c.check == "ks" and c.subject == "ret_1")
    assert (row["value"], row["p_value"], row["n"], row["verdict"]) == (pytest.approx(first.value), pytest.approx(first.p_value), first.n, "drift")


def test_record_checks_refuses_a_duplicate_key_and_writes_nothing(engine):
    c = _checks()[0]
    with pytest.raises(ValueError, match="appears twice"):
        M.record_checks([c, c], account="a", scope="s", db=engine)
    assert _load(engine).empty
    with pytest.raises(ValueError, match="account must be a non-empty string"):
        M.record_checks([c], account="", scope="s", db=engine)


def test_record_checks_is_one_transaction(engine, monkeypatch):
    from kit.store import engine as E

    checks = _checks()
    M.record_checks(checks[:3], account="a", scope="s", db=engine)
    real = E.write_tx

    class Boom(RuntimeError):
        pass

    import contextlib

    @contextlib.contextmanager
    def failing(eng, lock):
        with real(eng, lock) as conn:
            yield conn
            raise Boom("after the delete and the insert")  # the transaction must roll back both

    monkeypatch.setattr(M, "write_tx", failing)
    with pytest.raises(Boom):
        M.record_checks(checks, account="a", scope="s", db=engine)
    monkeypatch.setattr(M, "write_tx", real)
    got = _load(engine)
    assert len(got) == 3 and set(got["subject"]) == {c.subject for c in checks[:3]}


def test_record_checks_accepts_the_performance_frame(engine):
    o = _outcomes(1, "m@1", [True] * 10 + [False] * 20, ape=np.linspace(0.0, 0.1, 30))
    frame = drift.performance_drift(o)
    assert M.record_checks(frame, account="a", scope="s", db=engine) == 2
    assert set(_load(engine)["check"]) == {"direction_accuracy", "mape"}
    with pytest.raises(TypeError, match="DriftCheck"):
        M.record_checks([{"check": "x"}], account="a", scope="s", db=engine)


def test_the_database_refuses_an_unknown_verdict(engine):
    import sqlalchemy as sa

    from kit.store import schema as S
    from kit.store.engine import get_engine, write_tx

    with pytest.raises(sa.exc.IntegrityError):
        with write_tx(get_engine(engine), "monitoring") as conn:
            conn.execute(S.drift_checks.insert().values(account="a", as_of=dt.date(2024, 1, 2), check="ks", subject="f", scope="s",
                                                        verdict="maybe", recorded_at="x"))


# ------------------------------------------------------------------------------------------------
# false-positive rate and power (slow: 1,000 draws each)
# ------------------------------------------------------------------------------------------------

DRAWS = 1000


def _rate_not_above(k: int, n: int, alpha: float) -> float:
    """p-value of "the true rate is above alpha" given k rejections in n draws."""
    return stats.binomtest(k, n, alpha, alternative="greater").pvalue


@pytest.mark.slow
def test_feature_drift_false_positive_rate_is_at_most_alpha_over_1000_undrifted_draws():
    rng = np.random.default_rng(20240328)
    hits = 0
    for _ in range(DRAWS):
        s = rng.integers(2**32)
        r = drift.feature_drift(_panel(500, s), _panel(60, s + 1))
        hits += bool((r["verdict"] == "drift").any())
    # Holm keeps the family-wise rate at most 5%; a rate significantly above it fails (p < 0.001)
    assert _rate_not_above(hits, DRAWS, 0.05) > 1e-3, f"{hits} of {DRAWS} undrifted draws flagged"


@pytest.mark.slow
def test_feature_drift_power_for_a_half_sd_shift_with_250_recent_rows():
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(300):
        s = rng.integers(2**32)
        r = drift.feature_drift(_panel(1000, s), _panel(250, s + 1, shift={"ret_21": 0.5}))
        hits += r.loc["ret_21", "verdict"] == "drift"
    assert hits / 300 > 0.95, f"power {hits / 300:.3f}"


@pytest.mark.slow
def test_performance_drift_false_positive_rate_at_the_gate_is_at_most_alpha():
    rng = np.random.default_rng(11)
    acc_hits = mape_hits = 0
    for _ in range(DRAWS):
        correct = rng.random(300) < 0.52  # accuracy exactly at the gate: the least favourable null
        ape = rng.exponential(0.05, 300)  # skewed errors with mean exactly at max_mape
        r = drift.performance_drift(_outcomes(1, "m", list(correct), ape=ape, per_day=10), window=30).set_index("check")
        acc_hits += r.loc["direction_accuracy", "verdict"] == "drift"
        mape_hits += r.loc["mape", "verdict"] == "drift"
    assert _rate_not_above(acc_hits, DRAWS, 0.05) > 1e-3, f"accuracy: {acc_hits} of {DRAWS}"
    assert _rate_not_above(mape_hits, DRAWS, 0.05) > 1e-3, f"mape: {mape_hits} of {DRAWS}"
