import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from kit import analytics, portfolio
from kit.features import kernels
from kit.portfolio import Limits

Z95 = -1.6448536269514722  # Phi^{-1}(0.05)
PHI_Z95 = 0.10313564037537128  # phi(1.6448536...)

# 20 returns: worst -0.05, second worst -0.03, the rest >= -0.02
R20 = np.array([-0.05, -0.03, -0.02, -0.01, -0.01, 0.0, 0.0, 0.005, 0.01, 0.01,
                0.01, 0.015, 0.02, 0.02, 0.02, 0.025, 0.03, 0.03, 0.04, 0.05])


# ---------------------------------------------------------------- VaR / CVaR


def test_historical_var_cvar_hand_values():
    r = pd.Series(np.random.default_rng(1).permutation(R20))
    # 5th percentile, linear interpolation at position 0.05 * 19 = 0.95 between -0.05 and -0.03
    assert analytics.value_at_risk(r) == pytest.approx(-(-0.05 + 0.95 * 0.02), abs=1e-15)  # 0.031
    # only -0.05 lies at or below that quantile
    assert analytics.conditional_value_at_risk(r) == pytest.approx(0.05, abs=1e-15)
    assert analytics.expected_shortfall is analytics.conditional_value_at_risk


def test_historical_matches_empyrical():
    import empyrical as ep

    r = pd.Series(np.random.default_rng(2).standard_t(3, 500) * 0.01)
    for c in (0.9, 0.95, 0.99):
        assert analytics.value_at_risk(r, c) == pytest.approx(-ep.value_at_risk(r, cutoff=1 - c), rel=1e-12)
        assert analytics.conditional_value_at_risk(r, c) == pytest.approx(-ep.conditional_value_at_risk(r, cutoff=1 - c), rel=1e-12)


def test_performance_table_reports_the_historical_var_and_cvar():
    r = pd.Series(np.random.default_rng(12).normal(0, 0.01, 300), index=pd.bdate_range("2020-01-01", periods=300))
    for c in (0.9, 0.95, 0.99):
        row = analytics.performance_table({"s": r}, level=c).loc["s"]
        assert row["value_at_risk"] == pytest.approx(analytics.value_at_risk(r, c), rel=1e-12)
        assert row["conditional_value_at_risk"] == pytest.approx(analytics.conditional_value_at_risk(r, c), rel=1e-12)


def test_gaussian_hand_values():
    r = np.array([0.01, -0.02, 0.03, 0.0, -0.01, 0.02])
    mu, sigma = r.mean(), r.std(ddof=1)
    assert analytics.value_at_risk(r, method="gaussian") == pytest.approx(-(mu + Z95 * sigma), rel=1e-12)
    assert analytics.conditional_value_at_risk(r, method="gaussian") == pytest.approx(-(mu - sigma * PHI_Z95 / 0.05), rel=1e-12)


def test_cornish_fisher_z_reference_values():
    # independent implementation (mir.stat cornishFisherInvCDF documentation examples)
    assert analytics.cornish_fisher_z(0.01, 0.1, 0.0) == pytest.approx(-2.249053, abs=1e-6)
    assert analytics.cornish_fisher_z(0.01, 0.1, 1.0) == pytest.approx(-2.482841, abs=1e-6)
    assert analytics.cornish_fisher_z(0.9, 0.1, 1.0) == pytest.approx(1.220374, abs=1e-6)
    assert analytics.cornish_fisher_z(0.05) == pytest.approx(Z95, abs=1e-15)
    with pytest.raises(ValueError, match="p must"):
        analytics.cornish_fisher_z(1.0)


def test_cornish_fisher_equals_gaussian_without_skew_or_excess_kurtosis():
    # -c, 0, c with shares 1/6, 2/3, 1/6: skewness 0 and kurtosis m4 / m2^2 = 1 / (1/3) = 3 exactly
    r = 0.001 + 0.02 * np.tile([-1.0, 0.0, 0.0, 0.0, 0.0, 1.0], 5)
    assert abs(stats.skew(r)) < 1e-12 and abs(stats.kurtosis(r)) < 1e-12
    for c in (0.95, 0.99):
        assert analytics.value_at_risk(r, c, "cornish_fisher") == pytest.approx(analytics.value_at_risk(r, c, "gaussian"), rel=1e-10)
        assert analytics.conditional_value_at_risk(r, c, "cornish_fisher") == pytest.approx(
            analytics.conditional_value_at_risk(r, c, "gaussian"), rel=1e-10
        )


def test_cornish_fisher_cvar_is_the_tail_average_of_the_cf_quantile():
    r = np.random.default_rng(3).standard_t(6, 2000) * 0.01 - 0.002 * np.random.default_rng(4).exponential(1, 2000)
    mu, sigma = r.mean(), r.std(ddof=1)
    s, k = stats.skew(r), stats.kurtosis(r)
    p = 0.05
    integral, _ = integrate.quad(lambda u: analytics.cornish_fisher_z(u, s, k), 1e-12, p, limit=200)
    expected = -(mu + sigma * integral / p)
    assert analytics.conditional_value_at_risk(r, 0.95, "cornish_fisher") == pytest.approx(expected, rel=1e-6)
    assert analytics.value_at_risk(r, 0.95, "cornish_fisher") == pytest.approx(-(mu + sigma * analytics.cornish_fisher_z(p, s, k)), rel=1e-12)
    # negative skew and fat tails: CF is more conservative than Gaussian here
    assert s < 0 and k > 0
    assert analytics.value_at_risk(r, 0.99, "cornish_fisher") > analytics.value_at_risk(r, 0.99, "gaussian")


def test_per_asset_frame_and_nan_dropping():
    rng = np.random.default_rng(5)
    df = pd.DataFrame(rng.normal(0, 0.01, (100, 3)), columns=["A", "B", "C"])
    df.iloc[:10, 1] = np.nan
    for m in analytics.VAR_METHODS:
        v = analytics.value_at_risk(df, method=m)
        assert v.name == "value_at_risk" and list(v.index) == ["A", "B", "C"]
        assert v["B"] == pytest.approx(analytics.value_at_risk(df["B"].iloc[10:], method=m), rel=1e-14)
        cv = analytics.conditional_value_at_risk(df, method=m)
        assert (cv >= v).all()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=5, max_size=80),
    st.sampled_from([0.9, 0.95, 0.975, 0.99]),
)
def test_cvar_at_least_var(values, c):
    r = np.array(values)
    for m in ("historical", "gaussian"):
        assert analytics.conditional_value_at_risk(r, c, m) >= analytics.value_at_risk(r, c, m) - 1e-12
    # historical VaR lies between the worst loss and the median loss
    assert -np.median(r) - 1e-12 <= analytics.value_at_risk(r, c) <= -r.min() + 1e-12


def test_var_bad_input():
    r = pd.Series(R20)
    with pytest.raises(ValueError, match="confidence"):
        analytics.value_at_risk(r, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        analytics.value_at_risk(r, 0.3)
    with pytest.raises(ValueError, match="method"):
        analytics.value_at_risk(r, method="montecarlo")
    with pytest.raises(ValueError, match="infinite"):
        analytics.value_at_risk(pd.Series([0.01, np.inf, 0.0]))
    with pytest.raises(ValueError, match="'B'.*1 valid"):
        analytics.value_at_risk(pd.DataFrame({"A": [0.01, 0.02], "B": [np.nan, 0.01]}))
    with pytest.raises(ValueError, match="need at least 4"):
        analytics.value_at_risk(r.iloc[:3], method="cornish_fisher")
    with pytest.raises(ValueError, match="one-dimensional"):
        analytics.value_at_risk(np.zeros((5, 2)))


def test_portfolio_var_is_historical_simulation_of_fixed_weights():
    rng = np.random.default_rng(6)
    idx = pd.bdate_range("2020-01-01", periods=250)
    rets = pd.DataFrame(rng.normal(0, 0.01, (250, 3)), index=idx, columns=["A", "B", "C"])
    rets.iloc[5, 2] = np.nan  # C not held: this row stays
    rets.iloc[7, 0] = np.nan  # A held: this row is dropped
    w = pd.Series({"A": 0.5, "B": -0.3, "C": 0.0})
    rp = analytics.portfolio_returns(w, rets)
    ref = rets[["A", "B"]].dropna() @ np.array([0.5, -0.3])
    assert len(rp) == 249
    np.testing.assert_allclose(rp.to_numpy(), ref.to_numpy(), rtol=1e-15)
    for m in analytics.VAR_METHODS:
        assert analytics.portfolio_value_at_risk(w, rets, 0.95, m) == pytest.approx(analytics.value_at_risk(ref, 0.95, m), rel=1e-12)
        assert analytics.portfolio_conditional_value_at_risk(w, rets, 0.95, m) == pytest.approx(
            analytics.conditional_value_at_risk(ref, 0.95, m), rel=1e-12
        )
    table = analytics.var_table(rets.fillna(0.0), w)
    assert list(table.index) == ["A", "B", "C", "PORTFOLIO"]
    assert list(table.columns) == [f"{m}_{k}" for m in analytics.VAR_METHODS for k in ("var", "cvar")]
    with pytest.raises(ValueError, match="missing from returns.*'Z'"):
        analytics.portfolio_returns(pd.Series({"A": 0.1, "Z": 0.1}), rets)
    with pytest.raises(ValueError, match="finite"):
        analytics.portfolio_returns(pd.Series({"A": np.nan}), rets)


# ---------------------------------------------------------------- Limits


def test_limits_validation_and_from_dict():
    lim = Limits.from_dict(yaml.safe_load("max_position: 0.05\nmax_gross: 1.5\nmax_net: .inf\nmax_turnover: 0.2\nallow_short: false"))
    assert lim.max_position == 0.05 and lim.max_net == math.inf and lim.max_turnover == 0.2 and not lim.allow_short
    assert Limits.from_dict(lim.to_dict()) == lim
    assert Limits().max_position == 0.02 and Limits().gross_cap == 1.0
    assert Limits(max_gross=3.0, max_leverage=2.0).gross_cap == 2.0
    with pytest.raises(ValueError, match="max_position"):
        Limits(max_position=-0.01)
    with pytest.raises(ValueError, match="max_position"):
        Limits(max_position=0.0)
    with pytest.raises(ValueError, match="max_gross"):
        Limits(max_gross=float("nan"))
    with pytest.raises(ValueError, match="max_net"):
        Limits(max_net=-1)
    with pytest.raises(ValueError, match="max_turnover"):
        Limits(max_turnover=float("nan"))
    with pytest.raises(ValueError, match="min_price"):
        Limits(min_price="5")
    with pytest.raises(ValueError, match="allow_short"):
        Limits(allow_short="no")
    with pytest.raises(ValueError, match="unknown key .max_pos. .did you mean .max_position"):
        Limits.from_dict({"max_pos": 0.1})
    assert Limits(max_net=0).max_net == 0.0  # market neutral is allowed


def test_apply_limits_hand_case():
    lim = Limits(max_position=0.02, max_gross=0.05, max_net=0.01)
    w = pd.Series({"A": 0.05, "B": -0.03, "C": 0.01, "D": 0.01, "E": np.nan})
    got = portfolio.apply_limits(w, lim)
    # clip: [0.02, -0.02, 0.01, 0.01, 0]; gross 0.06 -> x 5/6; net 1/60 > 0.01 -> longs x 0.8
    expected = np.array([0.02 * 5 / 6 * 0.8, -0.02 * 5 / 6, 0.01 * 5 / 6 * 0.8, 0.01 * 5 / 6 * 0.8, 0.0])
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-14)
    assert got.sum() == pytest.approx(0.01, rel=1e-14)
    # long only: shorts go first
    got = portfolio.apply_limits(w, Limits(max_position=0.02, max_gross=0.05, max_net=1.0, allow_short=False))
    np.testing.assert_allclose(got.to_numpy(), [0.02, 0.0, 0.01, 0.01, 0.0])
    # leverage binds when tighter than gross
    got = portfolio.apply_limits(pd.Series([0.5, 0.5, -0.5]), Limits(max_position=1, max_gross=5, max_net=5, max_leverage=1.2))
    np.testing.assert_allclose(got.to_numpy(), [0.4, 0.4, -0.4])


def test_apply_limits_turnover_walks_toward_target():
    idx = pd.bdate_range("2021-01-04", periods=3)
    w = pd.DataFrame({"A": [0.02, 0.02, -0.02], "B": [0.02, 0.02, 0.02]}, index=idx)
    got = portfolio.apply_limits(w, Limits(max_position=0.02, max_turnover=0.02))
    np.testing.assert_allclose(got.to_numpy(), [[0.01, 0.01], [0.02, 0.02], [0.0, 0.02]], atol=1e-16)
    got = portfolio.apply_limits(w, Limits(max_position=0.02, max_turnover=0.02), previous=pd.Series({"A": 0.02, "B": 0.02}))
    np.testing.assert_allclose(got.iloc[0].to_numpy(), [0.02, 0.02])
    with pytest.raises(ValueError, match="infinite.*'B'"):
        portfolio.apply_limits(w.assign(B=[0.0, np.inf, 0.0]), Limits())


limits_st = st.builds(
    Limits,
    max_position=st.floats(0.005, 0.5),
    max_gross=st.floats(0.05, 3.0),
    max_net=st.floats(0.0, 2.0),
    max_leverage=st.floats(0.05, 3.0),
    allow_short=st.booleans(),
    max_turnover=st.one_of(st.none(), st.floats(0.0, 1.0)),
)


@settings(max_examples=60, deadline=None)
@given(limits_st, st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 8))
def test_apply_limits_always_within_limits(lim, seed, T, N):
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 0.3, (T, N)) * rng.choice([0.0, 1.0, 10.0], (T, N))
    raw[rng.random((T, N)) < 0.1] = np.nan
    w = pd.DataFrame(raw, columns=[f"S{i}" for i in range(N)])
    got = portfolio.apply_limits(w, lim).to_numpy()
    assert np.isfinite(got).all()
    tol = 1e-12
    assert (np.abs(got) <= lim.max_position + tol).all()
    assert (np.abs(got).sum(axis=1) <= lim.gross_cap * (1 + tol) + tol).all()
    assert (np.abs(got.sum(axis=1)) <= lim.max_net * (1 + tol) + tol).all()
    if not lim.allow_short:
        assert (got >= 0).all()
    if lim.max_turnover is None:
        # only shrinks, never flips a sign; idempotent
        clean = np.nan_to_num(raw)
        assert (np.abs(got) <= np.abs(clean) + tol).all() and (got * clean >= 0).all()
        np.testing.assert_allclose(portfolio.apply_limits(pd.DataFrame(got), lim).to_numpy(), got, atol=1e-15)
    else:
        prev = np.vstack([np.zeros((1, N)), got[:-1]])
        assert (np.abs(got - prev).sum(axis=1) <= lim.max_turnover + 1e-12).all()


# ---------------------------------------------------------------- drawdown control


def test_drawdown_control_hand_cases():
    r = pd.Series([-0.15, -0.10, 0.0, 0.30, 0.0])
    # no feedback: dd after day 0 = 0.15 -> m = 1 - 0.5 * 0.5 = 0.75 for day 1; after day 1 equity
    # 0.765, dd 0.235 -> floor 0.5; day 3 equity 0.9945, dd 0.0055 -> 1
    m = portfolio.drawdown_control(r, threshold=0.1, floor=0.5, full_drawdown=0.2, feedback=False)
    np.testing.assert_allclose(m.to_numpy(), [1.0, 0.75, 0.5, 0.5, 1.0])
    # feedback: equity 0.85 (m 0.75), then 0.85 * (1 - 0.075) = 0.78625, dd 0.21375 -> 0.5;
    # then 0.78625 * 1.15 = 0.9041875, dd 0.0958125 -> 1
    m = portfolio.drawdown_control(r, threshold=0.1, floor=0.5, full_drawdown=0.2)
    np.testing.assert_allclose(m.to_numpy(), [1.0, 0.75, 0.5, 0.5, 1.0])
    r2 = pd.Series([-0.15, -0.10, 0.0, 0.20, 0.0])
    m = portfolio.drawdown_control(r2, threshold=0.1, floor=0.5, full_drawdown=0.2)
    dd = 1 - 0.78625 * 1.10 / 1.0  # 0.135125 -> 1 - 0.5 * 0.35125
    np.testing.assert_allclose(m.to_numpy(), [1.0, 0.75, 0.5, 0.5, 1 - 0.5 * (dd - 0.1) / 0.1])
    w = portfolio.drawdown_control(r2, threshold=0.1, floor=0.5, full_drawdown=0.2, align="weights")
    np.testing.assert_allclose(w.to_numpy()[:-1], m.to_numpy()[1:])
    assert m.name == "exposure_multiplier"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.02, 0.3), st.floats(0.0, 1.0), st.booleans(), st.integers(0, 59))
def test_drawdown_control_bounded_and_causal(seed, threshold, floor, feedback, k):
    rng = np.random.default_rng(seed)
    r = pd.Series(rng.normal(0, 0.03, 60))
    m = portfolio.drawdown_control(r, threshold=threshold, floor=floor, feedback=feedback)
    assert ((m >= floor - 1e-12) & (m <= 1 + 1e-12)).all()
    # change day k and everything after: multipliers up to and including day k must not move
    r2 = r.copy()
    r2.iloc[k:] = rng.normal(0, 0.2, 60 - k)
    m2 = portfolio.drawdown_control(r2, threshold=threshold, floor=floor, feedback=feedback)
    np.testing.assert_array_equal(m.to_numpy()[: k + 1], m2.to_numpy()[: k + 1])


def test_drawdown_control_bad_input():
    r = pd.Series([0.01, -0.02])
    with pytest.raises(ValueError, match="finite"):
        portfolio.drawdown_control(pd.Series([0.01, np.nan]))
    with pytest.raises(ValueError, match="threshold"):
        portfolio.drawdown_control(r, threshold=0.0)
    with pytest.raises(ValueError, match="full_drawdown"):
        portfolio.drawdown_control(r, threshold=0.2, full_drawdown=0.1)
    with pytest.raises(ValueError, match="floor"):
        portfolio.drawdown_control(r, floor=1.5)
    with pytest.raises(ValueError, match="align"):
        portfolio.drawdown_control(r, align="x")


# ---------------------------------------------------------------- ATR stops


def _ohlc(closes: dict, idx):
    close = pd.DataFrame(closes, index=idx)
    return close + 0.5, close - 0.5, close  # true range 1 while |close change| <= 0.5


def test_atr_stop_overlay_hand_case():
    idx = pd.bdate_range("2021-01-04", periods=10)
    # A: long from row 2 at 100.2 with ATR 1 -> stop 98.2, take-profit 103.2; the close of row 4
    #    (98.1) hits the stop; flat until the signal goes to 0 (row 7) and back (row 8).
    # B: short from row 2 at 100 with ATR 1 -> stop 102, take-profit 97; row 6 closes at 97.
    high, low, close = _ohlc(
        {
            "A": [100, 100, 100.2, 100.0, 98.1, 98.0, 97.5, 97.5, 97.5, 97.5],
            "B": [100, 100, 100.0, 99.6, 99.2, 98.8, 97.0, 97.0, 97.0, 97.0],
        },
        idx,
    )
    pos = pd.DataFrame(
        {"A": [np.nan, 0, 1, 1, 1, 1, 0.5, 0, 1, 1], "B": [0, 0, -1, -1, -1, -1, -1, -1, -1, -1]}, index=idx, dtype=float
    )
    atr = kernels.atr_wilder(high.to_numpy(), low.to_numpy(), close.to_numpy(), 2)
    assert atr[2, 0] == pytest.approx(1.0) and atr[2, 1] == pytest.approx(1.0)
    out, events = portfolio.atr_stop_overlay(pos, high, low, close, atr_window=2, return_events=True)
    np.testing.assert_array_equal(out["A"].to_numpy(), [np.nan, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(out["B"].to_numpy(), [0, 0, -1, -1, -1, -1, 0, 0, 0, 0])
    assert list(events["symbol"]) == ["A", "B"] and list(events["reason"]) == ["stop", "take_profit"]
    np.testing.assert_allclose(events[["entry_price", "exit_price", "stop", "take_profit"]].to_numpy(),
                               [[100.2, 98.1, 98.2, 103.2], [100.0, 97.0, 102.0, 97.0]])
    assert list(events["entry_date"]) == [idx[2], idx[2]] and list(events["exit_date"]) == [idx[4], idx[6]]
    # a wider stop (3 ATR -> 97.2) is not hit by A, and its take-profit (100.2 + 4.5) neither
    out3 = portfolio.atr_stop_overlay(pos, high, low, close, atr_window=2, stop_atr=3.0)
    np.testing.assert_array_equal(out3["A"].to_numpy(), pos["A"].to_numpy())


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 58))
def test_atr_stop_overlay_no_look_ahead(seed, k):
    rng = np.random.default_rng(seed)
    T, N = 60, 3
    idx = pd.bdate_range("2021-01-04", periods=T)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.03, (T, N)), 0)), index=idx, columns=list("XYZ"))
    high, low = close * 1.01, close * 0.99
    pos = pd.DataFrame(np.sign(rng.normal(0, 1, (T, N))).cumsum(0).clip(-1, 1), index=idx, columns=close.columns)
    out = portfolio.atr_stop_overlay(pos, high, low, close, atr_window=5, stop_atr=1.0)
    # stops only ever flatten, never add exposure
    assert ((out == pos) | (out == 0)).all().all()
    later = rng.normal(1, 0.3, (T - k - 1, N))
    c2, h2, l2 = close.copy(), high.copy(), low.copy()
    for f in (c2, h2, l2):
        f.iloc[k + 1 :] = f.iloc[k + 1 :].to_numpy() * later
    p2 = pos.copy()
    p2.iloc[k + 1 :] = -p2.iloc[k + 1 :].to_numpy()
    out2 = portfolio.atr_stop_overlay(p2, h2, l2, c2, atr_window=5, stop_atr=1.0)
    np.testing.assert_array_equal(out.to_numpy()[: k + 1], out2.to_numpy()[: k + 1])


def test_atr_stop_overlay_bad_input():
    idx = pd.bdate_range("2021-01-04", periods=3)
    f = pd.DataFrame({"A": [1.0, 1.0, 1.0]}, index=idx)
    with pytest.raises(ValueError, match="close must have the same index"):
        portfolio.atr_stop_overlay(f, f, f, f.rename(columns={"A": "B"}))
    with pytest.raises(ValueError, match="stop_atr"):
        portfolio.atr_stop_overlay(f, f, f, f, stop_atr=0)
    with pytest.raises(ValueError, match="take_profit_ratio"):
        portfolio.atr_stop_overlay(f, f, f, f, take_profit_ratio=-1)


# ---------------------------------------------------------------- correlation


def test_rolling_average_correlation_hand_case():
    a = np.random.default_rng(7).normal(0, 0.01, 10)
    df = pd.DataFrame({"A": a, "B": 2 * a + 0.001, "C": -a})
    got = analytics.rolling_average_correlation(df, window=5)
    assert got.iloc[:4].isna().all()
    np.testing.assert_allclose(got.iloc[4:].to_numpy(), -1 / 3, atol=1e-12)  # pairs (1, -1, -1)
    assert got.name == "average_correlation"


def test_rolling_average_correlation_matches_pandas():
    rng = np.random.default_rng(8)
    T, N, W = 40, 4, 10
    common = rng.normal(0, 0.01, (T, 1))
    df = pd.DataFrame(common + rng.normal(0, 0.01, (T, N)), columns=list("ABCD"))
    df.iloc[:15, 3] = np.nan  # D enters late
    df.iloc[20, 1] = np.nan  # B has a hole
    got = analytics.rolling_average_correlation(df, window=W)
    for t in range(W - 1, T):
        win = df.iloc[t - W + 1 : t + 1]
        live = win.columns[win.notna().all()]
        c = win[live].corr().to_numpy()
        n = len(live)
        assert got.iloc[t] == pytest.approx((c.sum() - n) / (n * (n - 1)), rel=1e-12)
    # and the pandas rolling-corr route on a complete frame
    full = df[["A", "C"]].assign(E=df["A"] * 0.5 + rng.normal(0, 0.01, T))
    rc = full.rolling(W).corr()
    ref = [
        (rc.loc[t].to_numpy().sum() - 3) / 6 if t >= W - 1 else np.nan for t in range(T)
    ]
    np.testing.assert_allclose(analytics.rolling_average_correlation(full, W).to_numpy(), ref, rtol=1e-10)
    with pytest.raises(ValueError, match="window"):
        analytics.rolling_average_correlation(df, window=1)


# ---------------------------------------------------------------- stress tests


def test_stress_test_windows_missing_symbols_and_worst_windows():
    idx = pd.bdate_range("2008-08-01", "2008-12-31")
    rets = pd.DataFrame({"A": 0.0, "B": 0.001}, index=idx)
    gfc = (idx >= "2008-09-01") & (idx <= "2008-11-30")
    rets.loc[gfc, "A"] = -0.01
    rets.loc[idx[idx >= "2008-10-01"], "B"] = np.nan  # B stops trading
    w = pd.Series({"A": 0.5, "B": 0.2, "ZZZ": 0.1})
    out = analytics.stress_test(w, rets, worst_k=1, worst_window=21)
    g = out.loc["GFC autumn 2008"]
    n = int(gfc.sum())
    n_b = int(((idx >= "2008-09-01") & (idx < "2008-10-01")).sum())
    assert g["days"] == n
    assert g["cumulative_return"] == pytest.approx((1 - 0.005 + 0.0002) ** n_b * (1 - 0.005) ** (n - n_b) - 1, rel=1e-12)
    assert g["worst_day"] == pytest.approx(-0.005)
    assert g["max_drawdown"] == pytest.approx(g["cumulative_return"], rel=1e-12)  # straight down
    assert g["missing_symbols"] == "B,ZZZ"
    assert g["missing_weight"] == pytest.approx(0.3)
    assert g["missing_obs"] == (n - n_b) + n
    c = out.loc["COVID March 2020"]
    assert c["days"] == 0 and np.isnan(c["cumulative_return"])
    worst = out.loc["worst 21d #1"]
    assert worst["start"] >= pd.Timestamp("2008-09-01") and worst["end"] <= pd.Timestamp("2008-11-30")
    assert worst["cumulative_return"] == pytest.approx((1 - 0.005) ** 21 - 1, rel=1e-12)


def test_stress_test_worst_windows_do_not_overlap_and_bad_input():
    rng = np.random.default_rng(9)
    idx = pd.bdate_range("2015-01-01", periods=300)
    rets = pd.DataFrame(rng.normal(0, 0.01, (300, 2)), index=idx, columns=["A", "B"])
    out = analytics.stress_test(pd.Series({"A": 1.0, "B": -0.5}), rets, windows={}, worst_k=3, worst_window=10)
    assert list(out.index) == ["worst 10d #1", "worst 10d #2", "worst 10d #3"]
    assert out["cumulative_return"].is_monotonic_increasing
    spans = sorted(zip(out["start"], out["end"], strict=True))
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
    rp = rets @ np.array([1.0, -0.5])
    brute = ((1 + rp).rolling(10).apply(np.prod, raw=True) - 1).min()
    assert out["cumulative_return"].iloc[0] == pytest.approx(brute, rel=1e-10)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        analytics.stress_test(pd.Series({"A": 1.0}), rets.reset_index(drop=True))
    with pytest.raises(ValueError, match="start .* after end"):
        analytics.stress_test(pd.Series({"A": 1.0}), rets, windows={"x": ("2016-01-01", "2015-01-01")})
    with pytest.raises(ValueError, match="finite"):
        analytics.stress_test(pd.Series({"A": np.inf}), rets)


# ---------------------------------------------------------------- optimisation


def test_min_variance_two_uncorrelated_assets_is_inverse_variance():
    # mean-zero columns with an exactly zero sample covariance
    a = 0.01 * np.tile([1.0, -1.0, 1.0, -1.0], 25)
    b = 0.02 * np.tile([1.0, 1.0, -1.0, -1.0], 25)
    rets = pd.DataFrame({"A": a, "B": b})
    assert abs(rets.cov().iloc[0, 1]) < 1e-20
    w = portfolio.optimise_weights(rets, "min_variance")
    np.testing.assert_allclose(w.to_numpy(), [0.02**2 / (0.01**2 + 0.02**2), 0.01**2 / (0.01**2 + 0.02**2)], atol=1e-7)
    assert w.name == "min_variance" and list(w.index) == ["A", "B"]


def test_unconstrained_solutions_match_closed_forms():
    rets = _five_assets()
    cov, mu = rets.cov().to_numpy(), rets.mean().to_numpy()
    inv = np.linalg.inv(cov)
    # long-short, only the budget: min variance w = S^-1 1 / 1'S^-1 1; tangency w = S^-1 mu / 1'S^-1 mu
    mv = inv.sum(axis=1) / inv.sum()
    tan = inv @ mu / (inv @ mu).sum()
    np.testing.assert_allclose(portfolio.optimise_weights(rets, "min_variance", long_only=False).to_numpy(), mv, atol=1e-6)
    np.testing.assert_allclose(portfolio.optimise_weights(rets, "max_sharpe", long_only=False).to_numpy(), tan, atol=1e-6)
    rf = 0.0002
    tan_rf = inv @ (mu - rf) / (inv @ (mu - rf)).sum()
    got = portfolio.optimise_weights(rets, "max_sharpe", long_only=False, risk_free_rate=rf)
    np.testing.assert_allclose(got.to_numpy(), tan_rf, atol=1e-6)


def _five_assets(seed=10, T=500):
    rng = np.random.default_rng(seed)
    vol = np.array([0.01, 0.015, 0.02, 0.012, 0.025])
    x = rng.normal(0, 0.006, (T, 1)) + rng.normal(0, 1, (T, 5)) * vol
    x = x - x.mean(axis=0) + np.array([0.0008, 0.0006, 0.001, 0.0004, 0.0012])  # exact sample means
    return pd.DataFrame(x, columns=list("ABCDE"))


def test_risk_parity_equalises_risk_contributions():
    rets = _five_assets()
    w = portfolio.optimise_weights(rets, "risk_parity")
    cov = rets.cov().to_numpy()
    rc = w.to_numpy() * (cov @ w.to_numpy())
    np.testing.assert_allclose(rc / rc.sum(), 0.2, atol=1e-4)
    assert w.sum() == pytest.approx(1.0, abs=1e-9) and (w >= 0).all()
    # budget 0.5 halves the weights (risk parity is scale invariant)
    w2 = portfolio.optimise_weights(rets, "risk_parity", budget=0.5, limits=Limits(max_position=1.0, max_net=1.0))
    np.testing.assert_allclose(w2.to_numpy(), 0.5 * w.to_numpy(), atol=1e-5)


def test_optimisation_respects_limits():
    rets = _five_assets()
    lim = Limits(max_position=0.3, max_gross=1.0, max_net=1.0)
    for method in ("max_sharpe", "min_variance", "risk_parity", "black_litterman"):
        w = portfolio.optimise_weights(rets, method, lim)
        assert (w.abs() <= 0.3).all() and (w >= 0).all(), method
        assert w.sum() == pytest.approx(1.0, abs=1e-6), method
    unconstrained = portfolio.optimise_weights(rets, "max_sharpe")
    assert unconstrained.max() > 0.3  # so the bound above did bind
    ls = Limits(max_position=0.6, max_gross=1.4, max_net=1.0)
    w = portfolio.optimise_weights(rets, "max_sharpe", ls, long_only=False)
    assert w.abs().sum() <= 1.4 + 1e-12 and (w.abs() <= 0.6).all() and w.sum() == pytest.approx(1.0, abs=1e-6)
    w = portfolio.optimise_weights(rets, "min_variance", Limits(max_position=0.5, max_gross=2.0, max_net=0.0), long_only=False, budget=0.0)
    assert abs(w.sum()) <= 1e-12 and w.abs().sum() <= 2.0 + 1e-12


def test_black_litterman_without_views_returns_market_weights():
    rets = _five_assets()
    mkt = pd.Series({"A": 0.35, "B": 0.25, "C": 0.2, "D": 0.15, "E": 0.05})
    w = portfolio.optimise_weights(rets, "black_litterman", market_weights=mkt, risk_aversion=2.5)
    np.testing.assert_allclose(w.to_numpy(), mkt.to_numpy(), atol=1e-4)
    # a bullish absolute view on E raises its weight; a relative view A over B moves weight to A
    w_e = portfolio.optimise_weights(rets, "black_litterman", market_weights=mkt, views={"E": 0.002})
    assert w_e["E"] > mkt["E"] + 0.01
    w_ab = portfolio.optimise_weights(rets, "black_litterman", market_weights=mkt, views=["A - B == 0.001"])
    assert w_ab["A"] > mkt["A"] + 0.01 and w_ab["B"] < mkt["B"] - 0.01
    with pytest.raises(ValueError, match="market_weights lack symbols.*'E'"):
        portfolio.optimise_weights(rets, "black_litterman", market_weights=mkt.drop("E"))


def test_optimisation_errors_name_the_method():
    rets = _five_assets()
    with pytest.raises(portfolio.OptimisationError, match="risk_parity.*infeasible"):
        portfolio.optimise_weights(rets, "risk_parity", Limits(max_position=0.1))
    with pytest.raises(portfolio.OptimisationError, match="max_sharpe"):
        portfolio.optimise_weights(rets - 0.01, "max_sharpe")
    with pytest.raises(ValueError, match="method must be one of"):
        portfolio.optimise_weights(rets, "hrp")
    with pytest.raises(ValueError, match="budget 1.0 exceeds Limits.max_net"):
        portfolio.optimise_weights(rets, "min_variance", Limits(max_position=1, max_net=0.5))
    with pytest.raises(ValueError, match="risk parity is long only"):
        portfolio.optimise_weights(rets, "risk_parity", long_only=False)
    with pytest.raises(ValueError, match="complete rows"):
        portfolio.optimise_weights(rets.iloc[:1], "min_variance")


# ---------------------------------------------------------------- pre-trade check


def test_pre_trade_check_records_every_violation():
    lim = Limits(max_position=0.02, max_gross=0.05, max_net=1.0, min_price=1.0)
    target = pd.Series({"A": 0.05, "B": np.nan, "C": 0.015, "D": -0.01, "E": 0.01, "F": 0.01})
    prices = pd.Series({"A": 10.0, "B": 20.0, "C": np.nan, "D": 0.5, "E": 30.0, "G": 40.0})
    current = pd.Series({"B": 0.01, "C": 0.01, "G": 0.01})
    res = portfolio.pre_trade_check(target, prices, lim, current_weights=current, equity=100_000.0)
    # A clipped 0.05 -> 0.02; B NaN -> kept 0.01; C no price -> frozen 0.01; D below min price -> 0;
    # E 0.01; F no price -> frozen at 0; G not targeted -> 0. Gross 0.04 <= 0.05.
    expected = pd.Series({"A": 0.02, "B": 0.01, "C": 0.01, "D": 0.0, "E": 0.01, "F": 0.0, "G": 0.0})
    pd.testing.assert_series_equal(res.accepted, expected, check_names=False)
    got = set(zip(res.violations["symbol"], res.violations["check"], strict=True))
    assert got == {("G", "missing_target"), ("B", "non_finite_target"), ("C", "bad_price"), ("F", "unknown_price"),
                   ("D", "min_price"), ("A", "max_position")}
    assert res.within_limits and not res.ok and res.frozen == ["C", "F"]
    assert res.trades["A"] == pytest.approx(0.02) and res.trades["G"] == pytest.approx(-0.01)
    assert res.shares["A"] == pytest.approx(0.02 * 100_000 / 10) and np.isnan(res.shares["C"])
    # a clean order passes untouched, including a gross that equals the cap up to rounding
    ok = portfolio.pre_trade_check({"A": 0.01, "E": -0.01}, prices, lim)
    assert ok.ok and ok.within_limits and ok.violations.empty
    six = {f"S{i}": 0.01 for i in range(6)}  # sums to 0.060000000000000005
    ok = portfolio.pre_trade_check(six, dict.fromkeys(six, 10.0), Limits(max_position=0.01, max_gross=0.06))
    assert ok.ok and (ok.accepted == 0.01).all()


def test_pre_trade_check_gross_net_leverage_and_turnover():
    lim = Limits(max_position=0.5, max_gross=1.0, max_net=0.2, max_leverage=0.8)
    prices = {s: 10.0 for s in "ABCD"}
    res = portfolio.pre_trade_check({"A": 0.4, "B": 0.4, "C": 0.3, "D": -0.1}, prices, lim)
    # gross 1.2 > 1.0 and > 0.8 -> x 2/3: [0.2667, 0.2667, 0.2, -0.0667]; net 0.6667 > 0.2 -> longs
    # x (0.0667 + 0.2) / 0.7333
    g = 2 / 3
    longs = np.array([0.4, 0.4, 0.3]) * g
    f = (0.1 * g + 0.2) / longs.sum()
    np.testing.assert_allclose(res.accepted.to_numpy(), [*(longs * f), -0.1 * g], rtol=1e-12)
    assert list(res.violations["check"]) == ["max_gross", "max_leverage", "max_net"]
    assert res.accepted.sum() == pytest.approx(0.2, rel=1e-12)
    # turnover: the book moves a third of the way from current to the limited target
    lim_t = Limits(max_position=0.5, max_turnover=0.2)
    res = portfolio.pre_trade_check({"A": 0.4}, prices, lim_t, current_weights={"A": 0.0, "B": 0.2})
    # target A 0.4, B 0 (no target): turnover 0.6 -> lambda 1/3
    np.testing.assert_allclose(res.accepted.to_numpy(), [0.4 / 3, 0.2 - 0.2 / 3], rtol=1e-12)
    assert list(res.violations["check"]) == ["missing_target", "max_turnover"]


def test_pre_trade_check_unresolved_when_frozen_names_break_limits():
    lim = Limits(max_position=0.02, max_gross=0.05)
    res = portfolio.pre_trade_check({"A": 0.01, "B": 0.01}, {"B": 5.0}, lim, current_weights={"A": 0.06, "B": 0.0})
    assert not res.within_limits
    assert res.accepted["A"] == 0.06 and res.accepted["B"] == 0.0  # B scaled to 0 to make room, A frozen
    checks = list(res.violations["check"])
    assert "unknown_price" in checks and "unresolved" in checks and "max_gross" in checks
    with pytest.raises(ValueError, match="current_weights must be finite"):
        portfolio.pre_trade_check({"A": 0.01}, {"A": 1.0}, lim, current_weights={"A": np.nan})
    with pytest.raises(ValueError, match="equity"):
        portfolio.pre_trade_check({"A": 0.01}, {"A": 1.0}, lim, equity=0.0)
    with pytest.raises(TypeError, match="limits"):
        portfolio.pre_trade_check({"A": 0.01}, {"A": 1.0}, {"max_position": 0.1})
    with pytest.raises(ValueError, match="prices has duplicate symbols"):
        portfolio.pre_trade_check({"A": 0.01}, pd.Series([1.0, 2.0], index=["A", "A"]), lim)


@settings(max_examples=50, deadline=None)
@given(limits_st, st.integers(0, 10_000), st.integers(1, 8))
def test_pre_trade_check_accepts_only_within_limits(lim, seed, N):
    rng = np.random.default_rng(seed)
    syms = [f"S{i}" for i in range(N)]
    target = pd.Series(rng.normal(0, 0.3, N), index=syms)
    current = apply = portfolio.apply_limits(pd.Series(rng.normal(0, 0.1, N), index=syms), lim)
    prices = pd.Series(rng.uniform(1, 100, N), index=syms)
    res = portfolio.pre_trade_check(target, prices, lim, current_weights=current)
    w = res.accepted.to_numpy()
    tol = 1e-12
    assert res.within_limits
    assert (np.abs(w) <= lim.max_position + tol).all()
    assert np.abs(w).sum() <= lim.gross_cap * (1 + tol) + tol
    assert abs(w.sum()) <= lim.max_net * (1 + tol) + tol
    if lim.max_turnover is not None:
        assert np.abs(w - apply.to_numpy()).sum() <= lim.max_turnover + 1e-12
    # no change without a record: if the target was not accepted as is, some row explains it
    if not np.allclose(w, target.to_numpy(), rtol=0, atol=0):
        assert not res.violations.empty


@pytest.mark.slow
def test_overlay_strategies_run_the_same_backtest_with_and_without_overlays():
    from kit import features

    rng = np.random.default_rng(11)
    dates = pd.bdate_range("2015-01-01", periods=400)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.015, (400, 3)), 0)), index=dates, columns=list("ABC"))
    high, low = close * 1.01, close * 0.99
    vol = features.ex_ante_vol(features.daily_returns(close))
    pos = np.sign(close.pct_change(20)).iloc[100:]
    out = portfolio.overlay_strategies(close, high, low, pos, vol, cost_bps=5.0)
    base = portfolio.simulate(close.iloc[100:], portfolio.vol_scaled_weights(pos, vol.iloc[100:]), 5.0)
    pd.testing.assert_series_equal(out["base"].returns, base.returns, check_names=False)
    m = out["exposure_multiplier"]
    assert m.between(0.25, 1.0).all()
    np.testing.assert_allclose(out["drawdown control"].weights.to_numpy(), out["base"].weights.mul(m, axis=0).to_numpy())
    # stops only ever flatten positions: the stopped book's gross never exceeds the base book's
    assert (out["ATR stops"].weights.abs().sum(axis=1) <= out["base"].weights.abs().sum(axis=1) + 1e-12).all()
    assert (out["ATR stops"].weights.abs().sum(axis=1) < out["base"].weights.abs().sum(axis=1) - 1e-12).any()
