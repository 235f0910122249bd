"""Features against plain numpy references written from the formulas, and a no-look-ahead test."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import features
from tests import pandas_reference as ref_pd


def ref_ewm_std(x: np.ndarray, alpha: float, min_periods: int) -> np.ndarray:
    """Bias-corrected EWM std with adjust=True weights (1 - alpha)^(t - j); NaNs keep their place
    in the decay (pandas ignore_na=False) and do not count towards min_periods."""
    out = np.full(len(x), np.nan)
    for t in range(len(x)):
        j = np.arange(t + 1)
        ok = ~np.isnan(x[: t + 1])
        if ok.sum() < max(min_periods, 2):
            continue
        w = (1 - alpha) ** (t - j[ok])
        v = x[: t + 1][ok]
        mean = (w * v).sum() / w.sum()
        biased = (w * (v - mean) ** 2).sum() / w.sum()
        out[t] = math.sqrt(max(biased * w.sum() ** 2 / (w.sum() ** 2 - (w**2).sum()), 0.0))
    return out


def ref_ewma(x: np.ndarray, alpha: float) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for t in range(len(x)):
        j = np.arange(t + 1)
        ok = ~np.isnan(x[: t + 1])
        if ok.any():
            w = (1 - alpha) ** (t - j[ok])
            out[t] = (w * x[: t + 1][ok]).sum() / w.sum()
    return out


def ref_rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for t in range(n - 1, len(x)):
        win = x[t - n + 1 : t + 1]
        if not np.isnan(win).any():
            out[t] = win.std(ddof=1)
    return out


def random_close(T=400, N=3, seed=0, gaps=True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, (T, N)), axis=0))
    if gaps:
        close[:30, 1] = np.nan  # late listing
        close[200:205, 2] = np.nan  # gap
    return pd.DataFrame(close, index=pd.bdate_range("2015-01-01", periods=T), columns=[f"S{i}" for i in range(N)])


def test_daily_returns_and_ex_ante_vol_match_reference():
    close = random_close()
    rets = features.daily_returns(close)
    c = close.to_numpy()
    ref_r = c[1:] / c[:-1] - 1
    np.testing.assert_allclose(rets.to_numpy()[1:], ref_r, equal_nan=True)
    vol = features.ex_ante_vol(rets, span=60, min_periods=20, annualise=False)
    for i in range(close.shape[1]):
        ref = ref_ewm_std(rets.iloc[:, i].to_numpy(), alpha=2 / 61, min_periods=20)
        np.testing.assert_allclose(vol.iloc[:, i].to_numpy(), ref, rtol=1e-9, equal_nan=True)
    ann = features.ex_ante_vol(rets, span=60, min_periods=20)
    np.testing.assert_allclose(ann.to_numpy(), vol.to_numpy() * math.sqrt(252), equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(-0.2, 0.2)), min_size=1, max_size=80),
    st.integers(2, 30),
)
def test_ex_ante_vol_property_with_gaps(values, span):
    x = np.array([np.nan if v is None else v for v in values], dtype=float)
    got = features.ex_ante_vol(pd.DataFrame({"a": x}), span=span, min_periods=2, annualise=False)["a"].to_numpy()
    ref = ref_ewm_std(x, alpha=2 / (span + 1), min_periods=2)
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-12, equal_nan=True)


def test_normalised_returns_match_reference():
    close = random_close()
    rets = features.daily_returns(close)
    daily_vol = features.ex_ante_vol(rets, annualise=False)
    for k in (1, 21, 63):
        got = features.normalised_returns(close, k, daily_vol).to_numpy()
        c, v = close.to_numpy(), daily_vol.to_numpy()
        ref = np.full_like(c, np.nan)
        for t in range(k, len(c)):
            ref[t] = (c[t] / c[t - k] - 1) / (v[t] * math.sqrt(k))
        np.testing.assert_allclose(got, ref, rtol=1e-10, equal_nan=True)


def test_macd_matches_baz_definition():
    close = random_close(T=500, gaps=False)
    got = features.macd_signal(close, 8, 24).to_numpy()
    np.testing.assert_allclose(got, ref_pd.macd_signal(close, 8, 24).to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)
    for i in range(close.shape[1]):
        p = close.iloc[:, i].to_numpy()
        # half-life ln(0.5)/ln(1 - 1/S) is the EWMA with alpha = 1/S
        q = (ref_ewma(p, 1 / 8) - ref_ewma(p, 1 / 24)) / ref_rolling_std(p, 63)
        y = q / ref_rolling_std(q, 252)
        np.testing.assert_allclose(got[:, i], y, rtol=1e-8, atol=1e-12, equal_nan=True)
    first_valid = np.flatnonzero(~np.isnan(got[:, 0]))[0]
    assert first_valid == 63 + 252 - 2  # 63-day price std, then 252 valid q values


def test_dmn_feature_set_names_and_stack():
    close = random_close()
    feats = features.dmn_features(close)
    assert list(feats) == [
        "ret_norm_1", "ret_norm_21", "ret_norm_63", "ret_norm_126", "ret_norm_252",
        "macd_8_24", "macd_16_48", "macd_32_96",
    ]
    arr, names = features.stack_features(feats)
    assert arr.shape == (len(close), close.shape[1], 8) and arr.dtype == np.float32
    assert names == list(feats)


def test_constant_price_gives_zero_vol_and_nan_normalised_return():
    close = pd.DataFrame({"c": np.full(100, 10.0)}, index=pd.bdate_range("2020-01-01", periods=100))
    vol = features.ex_ante_vol(features.daily_returns(close))
    assert (vol["c"].dropna() == 0).all()
    target, _ = features.next_day_target(close)
    assert target["c"].isna().all()  # undefined, not inf
    nr = features.normalised_returns(close, 1, vol)
    assert not np.isinf(nr.to_numpy()).any()


def test_no_look_ahead():
    close = random_close(T=450, gaps=False)
    k = 380
    changed = close.copy()
    changed.iloc[k:] *= np.linspace(1.5, 0.5, len(close) - k)[:, None]
    a = features.stack_features(features.dmn_features(close))[0]
    b = features.stack_features(features.dmn_features(changed))[0]
    np.testing.assert_array_equal(a[:k], b[:k])  # features at dates before k unchanged
    assert not np.allclose(a[k:], b[k:], equal_nan=True)
    ta, va = features.next_day_target(close)
    tb, vb = features.next_day_target(changed)
    np.testing.assert_array_equal(va.to_numpy()[:k], vb.to_numpy()[:k])
    np.testing.assert_array_equal(ta.to_numpy()[: k - 1], tb.to_numpy()[: k - 1])
    assert not np.allclose(ta.to_numpy()[k - 1], tb.to_numpy()[k - 1])  # uses r_{t+1}: after t only


def test_target_is_scaled_next_day_return():
    close = random_close(gaps=False)
    target, vol = features.next_day_target(close, target_vol=0.15)
    r = features.daily_returns(close)
    t = 300
    np.testing.assert_allclose(target.iloc[t], 0.15 / vol.iloc[t] * r.iloc[t + 1])
    assert target.iloc[-1].isna().all()


def _ohlcv(T=300, N=3, seed=4):
    rng = np.random.default_rng(seed)
    c = random_close(T=T, N=N, seed=seed)
    noise = np.abs(rng.normal(0, 0.01, c.shape))
    v = pd.DataFrame(rng.integers(1, 10_000, c.shape).astype(float), index=c.index, columns=c.columns).where(c.notna())
    return {"open": c * (1 + rng.normal(0, 0.003, c.shape)), "high": c * (1 + noise), "low": c * (1 - noise), "close": c, "volume": v}


def test_ldtm_feature_set_matches_pandas_reference():
    frames = _ohlcv()
    fa = features.feature_set("ldtm", frames)
    assert fa.names == ["open", "high", "low", "close", "volume", "log_ret_1", "log_ret_5", "rsi_14", "ma_ratio_5", "ma_ratio_10", "ma_ratio_20"]
    want = ref_pd.ldtm_features(*(frames[f] for f in ("open", "high", "low", "close", "volume")))
    for i, name in enumerate(fa.names):
        np.testing.assert_allclose(fa.values[:, :, i], want[name].to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    tidy = fa.to_frame()
    assert tidy.shape == (300 * 3, 11) and tidy.index.names == ["date", "symbol"]
    assert fa.select(["rsi_14", "close"]).values.shape == (300, 3, 2)


def test_dmn_feature_set_matches_pandas_reference():
    close = random_close()
    fa = features.feature_set("dmn", close)
    want = ref_pd.dmn_features(close)
    for i, name in enumerate(fa.names):
        np.testing.assert_allclose(fa.values[:, :, i], want[name].to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)


def test_feature_set_errors():
    frames = _ohlcv()
    with pytest.raises(ValueError, match="unknown"):
        features.feature_set("nope", frames)
    with pytest.raises(ValueError, match="missing"):
        features.feature_set("ldtm", {"close": frames["close"]})
    bad = dict(frames, volume=frames["volume"].iloc[:-1])
    with pytest.raises(ValueError, match="aligned"):
        features.feature_set("ldtm", bad)


def test_forward_returns_use_only_later_prices():
    close = random_close(T=100, gaps=False)
    fwd = features.forward_returns(close, (1, 5, 21))
    assert fwd.names == ["fwd_ret_1", "fwd_ret_5", "fwd_ret_21"]
    c = close.to_numpy()
    np.testing.assert_allclose(fwd.values[10, :, 1], c[15] / c[10] - 1)
    assert np.isnan(fwd.values[-5:, :, 1]).all() and np.isfinite(fwd.values[:-5, :, 1]).all()
    changed = close.copy()
    changed.iloc[:50] *= 3  # prices up to t=49 change
    f2 = features.forward_returns(changed, (1, 5, 21))
    np.testing.assert_array_equal(fwd.values[50:], f2.values[50:])  # targets at t >= 50 use prices after t only


def test_sliding_windows_are_views_and_aligned():
    vals = np.arange(20 * 2 * 3, dtype=float).reshape(20, 2, 3)
    win = features.sliding_windows(vals, 5)
    assert win.shape == (16, 2, 5, 3)
    assert np.shares_memory(win, vals)
    np.testing.assert_array_equal(win[0, 1], vals[0:5, 1])
    np.testing.assert_array_equal(win[15, 0], vals[15:20, 0])


def test_complete_windows_against_a_loop():
    rng = np.random.default_rng(3)
    ok = rng.random((40, 3)) > 0.1
    for L in (1, 4, 40, 41):
        got = features.complete_windows(ok, L)
        want = np.array([[t >= L - 1 and ok[t - L + 1 : t + 1, j].all() for j in range(3)] for t in range(40)])
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="lookback"):
        features.complete_windows(ok, 0)


def test_make_samples_drops_incomplete_windows():
    vals = np.ones((30, 2, 2))
    vals[10, 1, 0] = np.nan
    tgt = np.ones((30, 2))
    tgt[29] = np.nan
    X, y, where = features.make_samples(vals, tgt, lookback=5)
    # symbol 0: dates 4..28 (25); symbol 1: dates 4..9 and 15..28 (6 + 14)
    assert len(X) == 25 + 20 and X.shape[1:] == (5, 2) and y.shape == (45,)
    assert not ((where[:, 1] == 1) & (where[:, 0] >= 10) & (where[:, 0] <= 14)).any()
    assert np.isfinite(X).all()
