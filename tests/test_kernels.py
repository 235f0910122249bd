"""Every kernel against a plain pandas reference: random data with NaN gaps, short series, extreme
values (hypothesis), and the edge cases the docstrings promise."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kit.features import kernels as K
from tests import pandas_reference as ref

RTOL = 1e-9


def close_enough(got, want, rtol=RTOL, atol=1e-12):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    m = ~np.isnan(want)
    np.testing.assert_allclose(got[m], want[m], rtol=rtol, atol=atol)


# prices: positive, possibly extreme magnitudes, with NaN gaps, leading NaNs (late listing) and
# trailing NaNs (delisting)
price_values = st.one_of(st.none(), st.floats(1e-3, 1e6, allow_nan=False))


@st.composite
def price_frames(draw, min_t=1, max_t=120, n=3):
    T = draw(st.integers(min_t, max_t))
    cols = []
    for _ in range(n):
        vals = draw(st.lists(price_values, min_size=T, max_size=T))
        x = np.array([np.nan if v is None else v for v in vals])
        lead = draw(st.integers(0, T))
        x[:lead] = np.nan
        cols.append(x)
    return pd.DataFrame(np.stack(cols, axis=1), index=pd.RangeIndex(T))


def random_walk(T=400, N=4, seed=0, gaps=True):
    rng = np.random.default_rng(seed)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    if gaps:
        x[:37, 1] = np.nan
        x[200:207, 2] = np.nan
        x[350:, 3] = np.nan
    return pd.DataFrame(x)


@settings(max_examples=60, deadline=None)
@given(price_frames(), st.integers(1, 30))
def test_returns_property(df, k):
    close_enough(K.simple_returns(df.to_numpy(), k), df / df.shift(k) - 1)
    close_enough(K.log_returns(df.to_numpy(), k), np.log(df / df.shift(k)), atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(price_frames(), st.floats(1.0, 100.0), st.booleans(), st.integers(0, 15))
def test_ewm_mean_and_std_property(df, span, adjust, min_periods):
    x = df.to_numpy()
    close_enough(K.ewm_mean(x, span=span, adjust=adjust, min_periods=min_periods), df.ewm(span=span, adjust=adjust, min_periods=min_periods).mean(), rtol=1e-9, atol=1e-9)
    r = df.pct_change(fill_method=None)
    close_enough(K.ewm_std(r.to_numpy(), span=span, adjust=adjust, min_periods=min_periods), r.ewm(span=span, adjust=adjust, min_periods=min_periods).std(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kw", [{"span": 60}, {"halflife": 10.5}, {"alpha": 0.3}, {"com": 4.0}])
def test_ewm_parametrisations(kw):
    df = random_walk()
    close_enough(K.ewm_mean(df.to_numpy(), **kw), df.ewm(**kw).mean())
    close_enough(K.ewm_std(df.to_numpy(), **kw), df.ewm(**kw).std())
    with pytest.raises(ValueError, match="exactly one"):
        K.ewm_alpha(span=3, alpha=0.5)
    with pytest.raises(ValueError, match="alpha"):
        K.ewm_alpha(alpha=1.5)


@settings(max_examples=60, deadline=None)
@given(price_frames(), st.integers(1, 40), st.data())
def test_rolling_property(df, window, data):
    mp = data.draw(st.one_of(st.none(), st.integers(1, window)))
    x = df.to_numpy()
    roll = df.rolling(window, min_periods=mp)
    # Any running (add/remove) variance, pandas' included, keeps a residue of about eps * M^2 per
    # window after large values M have left it, so a std near 0 is only known to ~sqrt(eps) * M:
    # the absolute tolerance scales with the series' magnitude (hypothesis found a window of equal
    # values after 6,837s where pandas says 1.2e-4 and the kernel the exact 0).
    scale = float(np.nanmax(np.abs(x), initial=1.0))
    close_enough(K.rolling_mean(x, window, mp), roll.mean(), rtol=1e-8, atol=1e-9 * scale)
    atol = 1e-7 * scale * np.sqrt(window)
    close_enough(K.rolling_std(x, window, mp), roll.std(), rtol=1e-6, atol=atol)
    close_enough(K.rolling_std(x, window, mp, ddof=0), roll.std(ddof=0), rtol=1e-6, atol=atol)


def test_rolling_realistic_precision():
    df = random_walk(T=5000, gaps=True)
    for w in (5, 20, 63, 252):
        close_enough(K.rolling_mean(df.to_numpy(), w), df.rolling(w).mean(), rtol=1e-11)
        close_enough(K.rolling_std(df.to_numpy(), w), df.rolling(w).std(), rtol=1e-9)
    close_enough(K.rolling_zscore(df.to_numpy(), 20), ref.zscore(df, 20), rtol=1e-8, atol=1e-9)


def test_ex_ante_vol_and_normalised_returns():
    df = random_walk()
    r = ref.daily_returns(df)
    close_enough(K.ex_ante_vol(r.to_numpy()), ref.ex_ante_vol(r))
    dv = ref.ex_ante_vol(r, annualise=False)
    for k in (1, 21, 63):
        close_enough(K.vol_normalised_returns(df.to_numpy(), k, dv.to_numpy()), ref.normalised_returns(df, k, dv))


@pytest.mark.parametrize("pair", [(8, 24), (16, 48), (32, 96)])
def test_macd_against_pandas(pair):
    df = random_walk(T=700)
    close_enough(K.macd_baz(df.to_numpy(), *pair), ref.macd_signal(df, *pair), rtol=1e-8, atol=1e-10)


def test_indicators_against_pandas():
    rng = np.random.default_rng(5)
    c = random_walk(T=300, seed=5)
    h = c * (1 + np.abs(rng.normal(0, 0.01, c.shape)))
    lo = c * (1 - np.abs(rng.normal(0, 0.01, c.shape)))
    v = pd.DataFrame(rng.integers(1, 10_000, c.shape).astype(float)).where(c.notna())
    close_enough(K.rsi_ewm(c.to_numpy(), 14), ref.rsi(c, 14))
    close_enough(K.atr_ewm(h.to_numpy(), lo.to_numpy(), c.to_numpy(), 14), ref.atr(h, lo, c, 14))
    pb, bw = K.bollinger(c.to_numpy(), 20, 2.0)
    rpb, rbw = ref.bollinger(c, 20, 2.0)
    close_enough(pb, rpb, rtol=1e-8)
    close_enough(bw, rbw, rtol=1e-8)
    close_enough(K.rolling_vwap(h, lo, c, v, 20), ref.rolling_vwap(h, lo, c, v, 20))
    close_enough(K.volume_ratio(v.to_numpy(), 20), ref.volume_ratio(v, 20))
    close_enough(K.sma(c.to_numpy(), 10), c.rolling(10).mean())
    close_enough(K.ema(c.to_numpy(), 10), c.ewm(span=10, adjust=False, min_periods=10).mean())
    close_enough(K.ma_ratio(c.to_numpy(), 5), c / c.rolling(5).mean())


def test_short_series_all_nan_and_constant_price():
    short = np.array([[100.0, np.nan], [101.0, np.nan], [102.0, np.nan]])
    assert np.isnan(K.rolling_std(short, 20)).all()
    assert np.isnan(K.macd_baz(short, 8, 24)).all()
    assert np.isnan(K.rsi_wilder(short, 14)).all()
    assert np.isnan(K.dmn_batch(short)).all()
    const = np.full((400, 1), 50.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning flood on zero volatility
        vol = K.ex_ante_vol(K.simple_returns(const))
        assert (vol[20:] == 0).all()
        assert (K.rolling_std(const, 20)[19:] == 0).all()
        assert np.isnan(K.macd_baz(const, 8, 24)).all()  # 0 / 0: undefined, documented as NaN
        assert (K.rsi_wilder(const, 14)[14:] == 50).all()
        assert np.isnan(K.rolling_zscore(const, 20)).all()
        f = K.dmn_batch(const)
        assert np.isnan(f).all()  # zero volatility: normalised returns undefined


def test_bad_arguments_are_named():
    x = np.ones((10, 2))
    with pytest.raises(ValueError, match="window"):
        K.rolling_mean(x, 0)
    with pytest.raises(ValueError, match="min_periods"):
        K.rolling_mean(x, 5, 6)
    with pytest.raises(ValueError, match="short"):
        K.macd_baz(x, 24, 8)
    with pytest.raises(ValueError, match=r"shape"):
        K.simple_returns(np.ones((2, 2, 2)))


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, st.integers(300, 420), elements=st.floats(-0.05, 0.05)), st.integers(1, 280))
def test_no_look_ahead_any_kernel(steps, cut):
    x = 100 * np.exp(np.cumsum(steps))[:, None]
    y = x.copy()
    y[cut:] *= 1.7
    for f in (
        lambda a: K.dmn_batch(a)[:, :, 0],
        lambda a: K.dmn_batch(a)[:, :, 7],
        lambda a: K.ldtm_batch(a, a * 1.01, a * 0.99, a, a * 0 + 1e6)[:, :, 7],
        lambda a: K.rolling_zscore(a, 20),
        lambda a: K.ewm_std(a, span=30),
    ):
        np.testing.assert_array_equal(f(x)[:cut], f(y)[:cut])


def test_ewm_mean_matches_pandas_alpha_half_gap_quirk():
    """pandas renormalises the new weight after a NaN gap when alpha = 0.5 and adjust=False; the
    kernel follows it (found by hypothesis: [1, NaN, 2] gives 1.75, not 1.6667)."""
    x = np.array([1.0, np.nan, 2.0, np.nan, np.nan, 4.0, 3.0])
    for span in (3, 4):
        close_enough(K.ewm_mean(x, span=span, adjust=False), pd.Series(x).ewm(span=span, adjust=False).mean())
