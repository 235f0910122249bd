import math

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from kit import analytics as metrics
from kit.analytics import sharpe


def _returns(seed=0, n=1000, mu=0.0005, sd=0.01):
    rng = np.random.default_rng(seed)
    return pd.Series(rng.normal(mu, sd, n), index=pd.bdate_range("2015-01-01", periods=n))


def test_performance_table_matches_empyrical_and_hand_values():
    r = _returns()
    t = metrics.performance_table({"s": r})
    row = t.loc["s"]
    assert row.sharpe_ratio == pytest.approx(math.sqrt(252) * r.mean() / r.std(ddof=1), rel=1e-12)
    assert row.annual_volatility == pytest.approx(r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert row.annual_return == pytest.approx((1 + r).prod() ** (252 / len(r)) - 1, rel=1e-10)
    assert row.max_drawdown == pytest.approx(ep.max_drawdown(r))
    assert row.max_drawdown == pytest.approx(metrics.drawdown(r).min(), rel=1e-12)
    assert row.pct_positive == pytest.approx((r > 0).mean())
    assert row.sharpe_ci_low < row.sharpe_ratio < row.sharpe_ci_high
    assert row.days == 1000


def test_sharpe_ci_normal_case_matches_lo_formula():
    r = _returns(n=2520)
    sr, lo, hi = metrics.sharpe_ratio_ci(r)
    d = r.mean() / r.std(ddof=1)
    se_lo = math.sqrt((1 + 0.5 * d**2) / len(r)) * math.sqrt(252)
    assert (hi - lo) / 2 == pytest.approx(1.959964 * se_lo, rel=0.05)  # normal data: Mertens ~ Lo


def test_sharpe_ci_covers_true_value_in_simulation():
    true_sr = 0.0005 / 0.01 * math.sqrt(252)
    hits = sum(metrics.sharpe_ratio_ci(_returns(seed=s, n=500))[1] <= true_sr <= metrics.sharpe_ratio_ci(_returns(seed=s, n=500))[2] for s in range(200))
    assert 0.90 <= hits / 200 <= 0.99


def test_nan_returns_are_refused():
    r = _returns()
    r.iloc[10] = np.nan
    with pytest.raises(ValueError, match="returns\\['s'\\].*NaN"):
        metrics.performance_table({"s": r})


# --- hand-computed small cases -----------------------------------------------------------------------

HAND = pd.Series([0.10, -0.20, 0.25, -0.10, 0.0], index=pd.bdate_range("2021-01-04", periods=5))


def test_hand_case_drawdown_sharpe_var_and_dmn_columns():
    # equity 1.1, 0.88, 1.1, 0.99, 0.99: worst fall 1.1 -> 0.88 = -20%
    t = metrics.performance_table({"h": HAND}).loc["h"]
    assert t.max_drawdown == pytest.approx(-0.20, abs=1e-15)
    # mean 0.01; squared deviations 0.0081 + 0.0441 + 0.0576 + 0.0121 + 0.0001 = 0.122; var 0.0305
    assert t.sharpe_ratio == pytest.approx(0.01 / math.sqrt(0.0305) * math.sqrt(252), rel=1e-12)
    assert metrics.sharpe_ratio(HAND) == pytest.approx(0.01 / math.sqrt(0.0305) * math.sqrt(252), rel=1e-12)
    # sorted -0.2, -0.1, 0, 0.1, 0.25: the 5th percentile sits 0.2 of the way from -0.2 to -0.1
    assert t.value_at_risk == pytest.approx(0.18, abs=1e-15)
    assert t.conditional_value_at_risk == pytest.approx(0.20, abs=1e-15)  # floor(4 * 0.05) + 1 = 1 worst day
    assert t.downside_deviation == pytest.approx(math.sqrt((0.04 + 0.01) / 5 * 252), rel=1e-12)
    assert t.avg_profit_over_avg_loss == pytest.approx(0.175 / 0.15, rel=1e-12)
    assert t.pct_positive == pytest.approx(0.4) and t.hit_rate == pytest.approx(0.5)  # 2 of 5 days, 2 of 4 non-flat
    assert t.calmar_ratio == pytest.approx(t.annual_return / 0.20, rel=1e-12)
    assert t.annual_return == pytest.approx(0.99 ** (252 / 5) - 1, rel=1e-12)


def test_var_and_cvar_on_a_uniform_grid():
    r = pd.Series(np.round(np.arange(-50, 51) / 100, 2))  # -0.50 .. 0.50, 101 values
    assert metrics.value_at_risk(r) == pytest.approx(0.45, abs=1e-12)  # 5th percentile = 6th value
    assert metrics.conditional_value_at_risk(r) == pytest.approx(0.475, abs=1e-12)  # mean of -0.50 .. -0.45
    assert metrics.value_at_risk(r, 0.99) == pytest.approx(0.49, abs=1e-12)
    with pytest.raises(ValueError, match="confidence"):
        metrics.value_at_risk(r, 95)


def test_every_empyrical_column_matches_empyrical():
    r = _returns(seed=3, n=800, sd=0.012)
    b = _returns(seed=4, n=800)
    t = metrics.performance_table({"s": r, "b": b}, benchmark="b").loc["s"]
    assert t.annual_return == pytest.approx(ep.annual_return(r), rel=1e-12)
    assert t.annual_volatility == pytest.approx(ep.annual_volatility(r), rel=1e-12)
    assert t.sharpe_ratio == pytest.approx(ep.sharpe_ratio(r), rel=1e-12)
    assert metrics.sharpe_ratio(r) == pytest.approx(ep.sharpe_ratio(r), rel=1e-12)
    assert t.sortino_ratio == pytest.approx(ep.sortino_ratio(r), rel=1e-12)
    assert t.downside_deviation == pytest.approx(ep.downside_risk(r), rel=1e-12)
    assert t.max_drawdown == pytest.approx(ep.max_drawdown(r), rel=1e-12)
    assert t.calmar_ratio == pytest.approx(ep.calmar_ratio(r), rel=1e-12)
    assert t.value_at_risk == pytest.approx(-ep.value_at_risk(r), rel=1e-12)
    assert t.conditional_value_at_risk == pytest.approx(-ep.conditional_value_at_risk(r), rel=1e-12)
    assert t.information_ratio == pytest.approx(ep.excess_sharpe(r, b) * math.sqrt(252), rel=1e-12)
    active = r - b
    assert t.information_ratio == pytest.approx(active.mean() / active.std() * math.sqrt(252), rel=1e-12)


def test_information_ratio_alignment_and_errors():
    r = _returns(seed=5, n=300)
    b = _returns(seed=6, n=400)  # covers r's dates and more
    assert metrics.information_ratio(r, b) == pytest.approx(ep.excess_sharpe(r, b.iloc[:300]) * math.sqrt(252), rel=1e-12)
    with pytest.raises(ValueError, match="benchmark misses 100"):
        metrics.information_ratio(b, r)
    assert math.isnan(metrics.information_ratio(r, r))
    with pytest.raises(ValueError, match="benchmark 'x'"):
        metrics.performance_table({"s": r}, benchmark="x")


def test_hit_rate_directional():
    idx = pd.bdate_range("2021-01-04", periods=4)
    pos = pd.DataFrame({"A": [1.0, -1.0, 0.0, 1.0], "B": [0.5, np.nan, -0.2, 0.3]}, index=idx)
    ret = pd.DataFrame({"A": [np.nan, 0.02, 0.01, -0.03], "B": [0.0, 0.01, 0.05, -0.01]}, index=idx)
    # bets (position at t-1, return at t): A +/+0.02 hit, A -/+0.01 miss, A 0 skipped; B +/+0.01 hit, B NaN skipped, B -/-0.01 hit
    assert metrics.hit_rate(ret, pos) == pytest.approx(3 / 4)
    assert metrics.avg_profit_over_avg_loss(pd.Series([0.01, 0.02])) == math.inf
    assert metrics.avg_profit_over_avg_loss(pd.Series([-0.01, 0.0])) == 0.0


# --- probabilistic and deflated Sharpe ratios, minimum track record length --------------------------


def _skewed(seed=0, n=750, mu=0.0006):
    rng = np.random.default_rng(seed)
    r = mu + 0.01 * rng.standard_normal(n) - 0.004 * (rng.exponential(1.0, n) - 1.0)  # negative skew
    return pd.Series(r, index=pd.bdate_range("2015-01-01", periods=n))


def test_psr_against_a_hand_computation():
    from scipy import stats

    r = _skewed()
    x = r.to_numpy()
    n = len(x)
    sr = x.mean() / x.std(ddof=1)
    m2 = ((x - x.mean()) ** 2).mean()
    g3 = ((x - x.mean()) ** 3).mean() / m2**1.5
    g4 = ((x - x.mean()) ** 4).mean() / m2**2
    assert g3 < -0.1 and g4 > 3.1  # non-normal, so the correction matters
    for bench in (0.0, 0.5):
        star = bench / math.sqrt(252)
        z = (sr - star) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
        assert metrics.probabilistic_sharpe_ratio(r, bench) == pytest.approx(stats.norm.cdf(z), rel=1e-12)
    assert metrics.probabilistic_sharpe_ratio(r, 5.0) < 0.5 < metrics.probabilistic_sharpe_ratio(r, 0.0)


def test_expected_max_sharpe_formula_and_simulation():
    from scipy import stats

    g = 0.5772156649015329
    e = (1 - g) * stats.norm.ppf(1 - 1 / 10) + g * stats.norm.ppf(1 - 1 / (10 * math.e))
    assert metrics.expected_max_sharpe(10, 4.0) == pytest.approx(2.0 * e, rel=1e-14)
    assert metrics.expected_max_sharpe(1, 4.0, sr_mean=0.3) == 0.3
    # close to the mean of the maximum of N standard normals for large N
    draws = np.random.default_rng(0).standard_normal((4000, 100)).max(axis=1).mean()
    assert metrics.expected_max_sharpe(100, 1.0) == pytest.approx(draws, rel=0.03)
    with pytest.raises(ValueError, match="n_trials"):
        metrics.expected_max_sharpe(0, 1.0)


def test_dsr_is_psr_at_the_expected_maximum_and_falls_with_trials():
    r = _skewed(seed=3)  # annualised Sharpe about 1.4
    v = 0.25
    for n in (2, 10, 100):
        bench = metrics.expected_max_sharpe(n, v)
        assert metrics.deflated_sharpe_ratio(r, n, v) == pytest.approx(metrics.probabilistic_sharpe_ratio(r, bench), rel=1e-14)
    dsr = [metrics.deflated_sharpe_ratio(r, n, v) for n in (1, 2, 5, 10, 50, 100, 1000)]
    assert dsr[0] == pytest.approx(metrics.probabilistic_sharpe_ratio(r, 0.0), rel=1e-14)
    assert all(a > b for a, b in zip(dsr, dsr[1:], strict=False))
    trials = np.array([0.1, 0.9, -0.3, 0.5, 1.2])
    assert metrics.deflated_sharpe_ratio(r, trial_sharpes=trials) == pytest.approx(
        metrics.deflated_sharpe_ratio(r, 5, trials.var(ddof=1)), rel=1e-14
    )
    default = metrics.deflated_sharpe_ratio(r, 10)  # null variance 252 / (T - 1)
    assert default == pytest.approx(metrics.deflated_sharpe_ratio(r, 10, 252 / (len(r) - 1)), rel=1e-14)
    with pytest.raises(ValueError, match="n_trials"):
        metrics.deflated_sharpe_ratio(r)


def test_min_track_record_length_is_where_psr_reaches_the_level():
    r = _skewed(seed=2, mu=0.0012)
    assert metrics.sharpe_ratio(r) > 0.5
    for bench, level in ((0.0, 0.95), (0.3, 0.99)):
        m = metrics.minimum_track_record_length(r, bench, level)
        sr, n, g3, g4 = sharpe._daily_moments(r.to_numpy())
        assert sharpe._psr(sr, bench / math.sqrt(252), m, g3, g4) == pytest.approx(level, abs=1e-12)
        # the same track record repeated k times keeps its moments: PSR crosses the level near MinTRL
        k_lo, k_hi = math.floor(m / len(r)), math.ceil(m / len(r))
        assert k_hi >= 1
        if k_lo >= 1:
            assert metrics.probabilistic_sharpe_ratio(pd.concat([r] * k_lo), bench) <= level + 1e-3
        assert metrics.probabilistic_sharpe_ratio(pd.concat([r] * k_hi), bench) >= level - 1e-3
    assert metrics.minimum_track_record_length(-r) == math.inf


# --- stationary bootstrap -------------------------------------------------------------------------------------------


def test_bootstrap_ci_is_seeded_covers_the_estimate_and_matches_arch():
    from arch.bootstrap import StationaryBootstrap

    r = _skewed(seed=3, n=600)
    sr, lo, hi = metrics.sharpe_ratio_bootstrap_ci(r, n_boot=400, mean_block=10, seed=7)
    assert sr == pytest.approx(ep.sharpe_ratio(r), rel=1e-12)
    assert lo < sr < hi
    assert metrics.sharpe_ratio_bootstrap_ci(r, n_boot=400, mean_block=10, seed=7) == (sr, lo, hi)
    assert metrics.sharpe_ratio_bootstrap_ci(r, n_boot=400, mean_block=10, seed=8) != (sr, lo, hi)
    bs = StationaryBootstrap(10, r.to_numpy(), seed=np.random.default_rng(7))
    ci = bs.conf_int(lambda x: np.array([x.mean() / x.std(ddof=1) * math.sqrt(252)]), reps=400, method="percentile", size=0.95)
    np.testing.assert_allclose([lo, hi], ci[:, 0], rtol=1e-12)


def test_bootstrap_ci_width_tracks_the_asymptotic_one_and_widens_with_dependence():
    r = _returns(seed=11, n=2000)
    _, lo, hi = metrics.sharpe_ratio_bootstrap_ci(r, n_boot=1000, mean_block=1)
    _, alo, ahi = metrics.sharpe_ratio_ci(r)
    assert (hi - lo) == pytest.approx(ahi - alo, rel=0.15)  # independent days: both are right
    rng = np.random.default_rng(12)  # AR(1) daily returns with strong positive autocorrelation
    e = rng.normal(0, 0.01, 2000)
    x = np.empty(2000)
    x[0] = e[0]
    for t in range(1, 2000):
        x[t] = 0.6 * x[t - 1] + e[t]
    ar = pd.Series(x + 0.0004, index=r.index)
    _, blo, bhi = metrics.sharpe_ratio_bootstrap_ci(ar, n_boot=1000)  # block length estimated
    _, alo, ahi = metrics.sharpe_ratio_ci(ar)
    assert (bhi - blo) > 1.5 * (ahi - alo)  # the iid interval is too narrow; the blocks see it
    with pytest.raises(ValueError, match="mean_block"):
        metrics.sharpe_ratio_bootstrap_ci(r, mean_block=0.5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.sharpe_ratio_bootstrap_ci(pd.Series([0.1, np.nan, 0.2, 0.3]))


def test_performance_table_new_columns_keep_the_old_ones():
    r = {"a": _returns(seed=1), "b": _returns(seed=2, mu=0.0)}
    old = ["annual_return", "annual_volatility", "sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "sortino_ratio",
           "max_drawdown", "calmar_ratio", "pct_positive"]
    t = metrics.performance_table(r)
    assert list(t.columns[: len(old)]) == old and list(t.columns[-3:]) == ["days", "start", "end"]
    for c in ("downside_deviation", "avg_profit_over_avg_loss", "hit_rate", "value_at_risk", "conditional_value_at_risk",
              "probabilistic_sharpe_ratio", "min_track_record_length"):
        assert c in t.columns
    assert not {"information_ratio", "deflated_sharpe_ratio", "sharpe_boot_low"} & set(t.columns)
    full = metrics.performance_table(r, benchmark="b", n_trials=20, bootstrap=True, n_boot=300)
    row = full.loc["a"]
    assert row.deflated_sharpe_ratio < row.probabilistic_sharpe_ratio
    assert row.deflated_sharpe_ratio == pytest.approx(metrics.deflated_sharpe_ratio(r["a"], 20), rel=1e-14)
    assert row.sharpe_boot_low < row.sharpe_ratio < row.sharpe_boot_high
    assert math.isnan(full.loc["b", "information_ratio"]) and row.information_ratio == pytest.approx(
        metrics.information_ratio(r["a"], r["b"]), rel=1e-14
    )
    assert row.min_track_record_length == pytest.approx(metrics.minimum_track_record_length(r["a"]), rel=1e-14)


def test_quantile_metrics_by_hand():
    idx = pd.bdate_range("2021-01-04", periods=4)
    close = pd.DataFrame({"A": [100.0, 110.0, 99.0, 99.0], "B": [50.0, 50.0, 55.0, 55.0]}, index=idx)
    # realised 1-day returns at the first two dates: A 0.10, -0.10; B 0.0, 0.10
    d = idx[:2]
    lo = pd.DataFrame({"A": [0.05, -0.05], "B": [-0.01, 0.0]}, index=d)
    md = pd.DataFrame({"A": [0.08, 0.01], "B": [0.0, 0.05]}, index=d)
    hi = pd.DataFrame({"A": [0.12, 0.02], "B": [0.01, 0.2]}, index=d)
    md.iloc[1, 1] = np.nan  # B on the second date: no forecast, left out
    out = metrics.quantile_metrics({0.1: {1: lo}, 0.5: {1: md}, 0.9: {1: hi}}, close).iloc[0]
    a = np.array([0.10, -0.10, 0.0])  # A d0, A d1, B d0
    q = np.array([[0.05, 0.08, 0.12], [-0.05, 0.01, 0.02], [-0.01, 0.0, 0.01]])
    tau = np.array([0.1, 0.5, 0.9])
    u = a[:, None] - q
    pin = np.maximum(tau * u, (tau - 1) * u).mean()
    assert out["n"] == 3
    assert out["coverage_10_90"] == pytest.approx(2 / 3) and out["below_q10"] == pytest.approx(1 / 3) and out["above_q90"] == 0.0
    assert out["pinball"] == pytest.approx(pin) and out["mae_median"] == pytest.approx((0.02 + 0.11 + 0.0) / 3)
    assert out["mean_width"] == pytest.approx((0.07 + 0.07 + 0.02) / 3)
    assert out["direction_accuracy"] == pytest.approx(1 / 2)  # A d0 right, A d1 wrong; B's median 0 is no call
    with pytest.raises(ValueError, match="levels 0.1, 0.5 and 0.9"):
        metrics.quantile_metrics({0.5: {1: md}}, close)
