"""Exchange calendar, resampling to coarser bars (committed daily data and an intraday file built
here), and multi-timeframe features without look-ahead."""

import numpy as np
import pandas as pd
import pytest

from kit import data, features


def test_xnys_sessions_equal_the_store_dates():
    cal = data.trading_calendar(data.sample_store())
    np.testing.assert_array_equal(data.sessions(cal[0], cal[-1]).to_numpy(), cal.to_numpy())


def test_daily_to_weekly_and_monthly_with_the_exchange_calendar():
    raw = data.read_prices(data.sample_store(), symbols=["AAPL", "MSFT"], start="2020-03-30", end="2021-04-21")
    wk = data.resample_bars(raw, "weekly")
    a = wk[wk["symbol"] == "AAPL"].set_index("date")
    # Good Friday 2020-04-10: that week's bar ends on Thursday 2020-04-09
    assert pd.Timestamp("2020-04-09") in a.index and pd.Timestamp("2020-04-10") not in a.index
    week = raw[(raw["symbol"] == "AAPL") & (raw["date"] >= "2020-04-06") & (raw["date"] <= "2020-04-09")]
    bar = a.loc["2020-04-09"]
    assert bar["open"] == week["open"].iloc[0] and bar["close"] == week["close"].iloc[-1]
    assert bar["high"] == week["high"].max() and bar["low"] == week["low"].min() and bar["volume"] == week["volume"].sum()
    assert bar["adjusted_close"] == week["adjusted_close"].iloc[-1]
    # the week of the AAPL 4-for-1 split (2020-08-31): split coefficients multiply
    assert a.loc["2020-09-04", "split_coefficient"] == 4.0
    # the data end on Wednesday 2021-04-21: that week is not complete and is dropped
    assert a.index[-1] == pd.Timestamp("2021-04-16")
    assert set(wk["date"]) <= set(data.sessions("2020-03-30", "2021-04-21"))
    mo = data.resample_bars(raw, "monthly")
    m = mo[mo["symbol"] == "MSFT"].set_index("date")
    assert list(m.index[:3]) == [pd.Timestamp("2020-03-31"), pd.Timestamp("2020-04-30"), pd.Timestamp("2020-05-29")]
    assert m.index[-1] == pd.Timestamp("2021-03-31")  # April 2021 incomplete
    assert data.infer_frequency(wk).name == "weekly" and data.infer_frequency(mo).bars_per_year == 12
    with pytest.raises(ValueError, match="not coarser"):
        data.resample_bars(wk, "weekly")
    with pytest.raises(ValueError, match="needs intraday bars"):
        data.resample_bars(raw, "daily")


def _five_minute_file(tmp_path):
    """5-minute bars of one symbol over two sessions: a full day and the 2020-11-27 half day (close
    13:00), with pre-market and after-hours bars that the daily bar must leave out."""
    rows = []
    price = 100.0
    for day in ("2020-11-25", "2020-11-27"):
        for t in pd.date_range(f"{day} 08:00", f"{day} 17:55", freq="5min"):
            price += 0.01
            rows.append({"Symbol": "XYZ", "Date": t.isoformat(), "Open": price, "High": price + 0.05,
                         "Low": price - 0.05, "Close": price + 0.01, "Adjusted_Close": price + 0.01, "Volume": 100})
    path = tmp_path / "xyz_5min.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_intraday_file_to_hourly_and_daily(tmp_path):
    prices, report = data.load_prices(_five_minute_file(tmp_path))
    assert report.frequency == "5min"
    day = data.resample_bars(prices, "daily")
    assert list(day["date"]) == [pd.Timestamp("2020-11-25"), pd.Timestamp("2020-11-27")]
    full = prices[(prices["date"] >= "2020-11-25 09:30") & (prices["date"] < "2020-11-25 16:00")]
    assert day.iloc[0]["open"] == full["open"].iloc[0] and day.iloc[0]["close"] == full["close"].iloc[-1]
    assert day.iloc[0]["volume"] == 78 * 100  # 6.5 hours of 5-minute bars, regular hours only
    assert day.iloc[1]["volume"] == 42 * 100  # the half day: 09:30 to 13:00
    hourly = data.resample_bars(prices, "1h")
    h = hourly[hourly["date"].dt.date == pd.Timestamp("2020-11-25").date()]
    assert h["date"].dt.strftime("%H:%M").tolist() == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    assert h["volume"].tolist() == [1200] * 6 + [600]  # 15:30-16:00 is half an hour
    first = prices[(prices["date"] >= "2020-11-25 09:30") & (prices["date"] < "2020-11-25 10:30")]
    assert h.iloc[0]["high"] == first["high"].max() and h.iloc[0]["low"] == first["low"].min()
    assert data.infer_frequency(hourly).name == "1h"
    with pytest.raises(ValueError, match="not coarser"):
        data.resample_bars(prices, "1min")


def test_multi_timeframe_features_have_no_look_ahead():
    prices, _ = data.load_prices(data.sample_store(), symbols=["AAPL", "KO", "XOM"], start="2014-01-01", end="2016-12-30")
    close = data.to_wide(prices, "close")
    fa = features.multi_timeframe_features(close)
    assert fa.names[:8] == list(features.FEATURE_SETS["dmn"].names)
    assert fa.names[8:] == ["w_ret_norm_4", "w_ret_norm_13", "w_ret_norm_52", "w_vol", "m_ret_norm_3", "m_ret_norm_6", "m_ret_norm_12", "m_vol"]
    v = fa.values
    assert np.isfinite(v[-1]).all()
    # changing every price after a date leaves every feature up to that date unchanged (mid-week dates too)
    for cut in ("2016-03-09", "2016-06-30", "2016-07-01", "2016-11-23"):
        t = close.index.get_loc(pd.Timestamp(cut))
        bumped = close.copy()
        bumped.iloc[t + 1 :] *= np.linspace(1.5, 0.5, len(close) - t - 1)[:, None]
        w = features.multi_timeframe_features(bumped).values
        np.testing.assert_array_equal(w[: t + 1], v[: t + 1])
        assert not np.allclose(w[t + 1 :], v[t + 1 :], equal_nan=True)
    # on Wednesday 2016-03-09 the weekly features are the previous week's bar (Friday 2016-03-04)
    wk = fa.names.index("w_ret_norm_4")
    wed, fri, thu = (close.index.get_loc(pd.Timestamp(d)) for d in ("2016-03-09", "2016-03-04", "2016-03-10"))
    np.testing.assert_array_equal(v[wed, :, wk], v[fri, :, wk])
    assert not np.array_equal(v[close.index.get_loc(pd.Timestamp("2016-03-11")), :, wk], v[thu, :, wk])
