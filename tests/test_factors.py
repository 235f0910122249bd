import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kit.analytics import factors

IDX = pd.bdate_range("2020-01-01", periods=40)


def _one_date_case():
    """One scored date, five assets: factor 1..5, next-day returns known exactly."""
    cols = list("ABCDE")
    r = np.array([0.01, 0.03, 0.02, 0.05, 0.04])
    close = pd.DataFrame([np.full(5, 100.0), 100.0 * (1 + r)], index=IDX[:2], columns=cols)
    scores = pd.DataFrame([[1.0, 2.0, 3.0, 4.0, 5.0], [np.nan] * 5], index=IDX[:2], columns=cols)
    return scores, close, r


def test_ic_and_rank_ic_against_a_hand_computation():
    scores, close, r = _one_date_case()
    fd = factors.factor_data(scores, close, horizons=(1,), n_quantiles=5)
    assert len(fd) == 5
    np.testing.assert_allclose(fd["1D"].to_numpy(), r, rtol=1e-12)
    # Spearman: return ranks 1,3,2,5,4; d = 0,-1,1,-1,1; rho = 1 - 6 * 4 / (5 * 24) = 0.8
    rank_ic = factors.information_coefficient(fd, "spearman")
    assert rank_ic["1D"].iloc[0] == pytest.approx(0.8)
    # Pearson by hand: f - mean = -2, -1, 0, 1, 2 (sum of squares 10); r - mean = -0.02, 0, -0.01, 0.02,
    # 0.01 (sum of squares 0.001); sum of products = 0.04 + 0 + 0 + 0.02 + 0.02 = 0.08
    want = 0.08 / np.sqrt(10 * 0.001)
    assert want == pytest.approx(0.8)
    assert factors.information_coefficient(fd, "pearson")["1D"].iloc[0] == pytest.approx(want)
    assert np.corrcoef([1, 2, 3, 4, 5], r)[0, 1] == pytest.approx(want)


def _random_panel(T=60, N=25, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2019-01-01", periods=T)
    cols = [f"S{i:02d}" for i in range(N)]
    ret = rng.normal(0, 0.01, (T, N))
    close = pd.DataFrame(100 * np.cumprod(1 + ret, 0), index=idx, columns=cols)
    nxt = close.shift(-1) / close - 1
    scores = nxt + rng.normal(0, 0.02, (T, N))  # an informative score (it peeks, on purpose: test data)
    return scores, close


def test_rank_ic_equals_alphalens_and_scipy_per_date_with_ties_and_summary_t_stats():
    import alphalens.performance as perf

    scores, close = _random_panel()
    scores = scores.round(2)  # ties in the factor
    fd = factors.factor_data(scores, close, horizons=(1, 5), n_quantiles=5)
    ic = factors.information_coefficient(fd, "spearman")
    lib = perf.factor_information_coefficient(fd)  # the library's per-date Spearman correlation
    pd.testing.assert_frame_equal(ic, lib[ic.columns], check_names=False, rtol=1e-12, atol=1e-12)
    for d in ic.index[:5]:
        g = fd.xs(d, level="date")
        assert ic.loc[d, "1D"] == pytest.approx(stats.spearmanr(g["factor"], g["1D"])[0])
    assert ic["1D"].mean() > 0.2  # the score is informative by construction
    summary = factors.ic_summary(fd)
    t, p = stats.ttest_1samp(ic["1D"].dropna(), 0.0)
    assert summary.loc["1D", "t-stat(IC)"] == pytest.approx(t)
    assert summary.loc["1D", "p-value(IC)"] == pytest.approx(p)
    assert summary.loc["1D", "nw_lags"] == 0 and summary.loc["5D", "nw_lags"] == 4
    assert summary.loc["1D", "n_dates"] == len(ic["1D"].dropna())


def test_newey_west_against_statsmodels_and_the_plain_case():
    sm = pytest.importorskip("statsmodels.api")
    x = np.random.default_rng(3).normal(0.1, 1.0, 200)
    x = np.convolve(x, np.ones(5) / 5, mode="valid")  # overlapping: autocorrelated
    for lags in (0, 4, 10):
        fit = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
        assert factors.newey_west_tstat(x, lags) == pytest.approx(float(fit.tvalues[0]), rel=1e-10)
    assert factors.newey_west_tstat(x, 0) == pytest.approx(x.mean() / (x.std(ddof=0) / np.sqrt(len(x))))
    with pytest.raises(ValueError, match="lags"):
        factors.newey_west_tstat(x, -1)


def test_quantile_returns_and_spread_hand_case():
    cols = [f"S{i}" for i in range(10)]
    r = np.linspace(-0.045, 0.045, 10)  # next-day return increases with the score
    close = pd.DataFrame([np.full(10, 50.0), 50.0 * (1 + r)], index=IDX[:2], columns=cols)
    scores = pd.DataFrame([np.arange(10.0), [np.nan] * 10], index=IDX[:2], columns=cols)
    fd = factors.factor_data(scores, close, horizons=(1,), n_quantiles=5)
    np.testing.assert_array_equal(fd["factor_quantile"].to_numpy(), np.repeat(np.arange(1, 6), 2))
    mean, se = factors.quantile_returns(fd)
    want = r.reshape(5, 2).mean(axis=1)
    np.testing.assert_allclose(mean["1D"].to_numpy(), want, atol=1e-15)
    spread, summary = factors.long_short_spread(fd)
    assert spread["1D"].iloc[0] == pytest.approx((want[-1] - want[0]) / 2)  # gross 1: 0.5 long, 0.5 short
    assert summary.loc["1D", "mean"] == pytest.approx((want[-1] - want[0]) / 2)


def test_rank_autocorrelation_and_turnover_hand_cases():
    cols = [f"S{i}" for i in range(4)]
    idx = IDX[:4]
    close = pd.DataFrame(100.0, index=idx, columns=cols) * np.linspace(1, 1.03, 4)[:, None]
    same = pd.DataFrame([[1.0, 2.0, 3.0, 4.0]] * 4, index=idx, columns=cols)
    flip = same.copy()
    flip.iloc[1] = [4.0, 3.0, 2.0, 1.0]
    fd_same = factors.factor_data(same, close, horizons=(1,), n_quantiles=2)
    fd_flip = factors.factor_data(flip, close, horizons=(1,), n_quantiles=2)
    ac = factors.rank_autocorrelation(fd_same)
    assert ac.iloc[1:].to_numpy() == pytest.approx([1.0, 1.0])
    ac = factors.rank_autocorrelation(fd_flip)
    assert ac.iloc[1] == pytest.approx(-1.0) and ac.iloc[2] == pytest.approx(-1.0)
    to = factors.quantile_turnover(fd_flip)
    # quantile 2 = {S2, S3}, then {S0, S1} (all new), then {S2, S3} again
    assert to[2].iloc[1:].to_numpy() == pytest.approx([1.0, 1.0])
    assert (factors.quantile_turnover(fd_same).iloc[1:] == 0).all().all()


def test_factor_data_respects_membership_and_drops_missing_returns():
    scores, close = _random_panel(T=30, N=10)
    mask = pd.DataFrame(True, index=close.index, columns=close.columns)
    mask.iloc[:, 0] = False
    close.iloc[10:, 1] = np.nan  # S01 delists: no forward return from date 9 on
    fd = factors.factor_data(scores, close, horizons=(1, 5), membership=mask)
    assets = fd.index.get_level_values("asset")
    assert "S00" not in set(assets)
    s01 = fd.xs("S01", level="asset")
    assert s01.index.max() < close.index[10 - 5]  # the 5-day return needs close_{t+5}
    assert fd.attrs["dropped_fraction"] > 0
    assert set(fd["factor_quantile"].unique()) <= set(range(1, 6))
    with pytest.raises(ValueError, match="same dates"):
        factors.factor_data(scores.iloc[:5], close)


def test_factor_report_has_every_table_and_ic_decay_over_horizons():
    scores, close = _random_panel(T=50, N=20)
    rep = factors.factor_report(scores, close, horizons=(1, 5, 21))
    assert list(rep["ic_decay"].index) == [1, 5, 21]
    assert rep["ic_decay"].loc[1, "rank_ic"] > rep["ic_decay"].loc[21, "rank_ic"] - 1  # finite, ordered table
    assert np.isfinite(rep["ic_decay"].to_numpy()).all()
    for key in ("ic", "rank_ic", "ic_summary", "rank_ic_summary", "quantile_returns", "spread", "spread_summary", "rank_autocorrelation", "turnover", "summary"):
        assert key in rep
    assert rep["summary"]["rank_ic_1D"] == pytest.approx(rep["rank_ic"]["1D"].mean())
