import numpy as np
import pandas as pd
import pytest

from kit import data
from tests.conftest import make_ohlcv


def test_load_committed_store_subset_tidy_and_wide():
    prices, report = data.load_prices(symbols=["AAPL", "MSFT"], start="2020-01-01", end="2020-12-31")
    assert list(prices["symbol"].unique()) == ["AAPL", "MSFT"]
    assert prices["date"].min() >= pd.Timestamp("2020-01-01") and prices["date"].max() <= pd.Timestamp("2020-12-31")
    assert prices.groupby("symbol").size().tolist() == [253, 253]  # 2020 had 253 NYSE sessions
    # adjusted: close equals adjusted_close and OHLC scaled by the same factor
    np.testing.assert_allclose(prices["close"], prices["adjusted_close"], rtol=1e-12)
    raw = data.read_prices(symbols=["AAPL", "MSFT"], start="2020-01-01", end="2020-12-31")
    np.testing.assert_allclose(prices["open"], raw["open"] * raw["adjusted_close"] / raw["close"], rtol=1e-12)
    wide = data.to_wide(prices, "close")
    assert wide.shape == (253, 2) and list(wide.columns) == ["AAPL", "MSFT"]
    assert wide.dtypes.eq("float64").all()
    assert report.n_symbols == 2 and report.calendar_days == 253


def test_adjustment_uses_adjusted_close_over_close(ohlcv):
    adj = data.adjust_prices(ohlcv)
    np.testing.assert_allclose(adj["adj_factor"], 0.9)
    np.testing.assert_allclose(adj["open"], ohlcv["open"] * 0.9)
    np.testing.assert_allclose(adj["high"], ohlcv["high"] * 0.9)
    np.testing.assert_allclose(adj["close"], ohlcv["adjusted_close"])
    np.testing.assert_array_equal(adj["volume"], ohlcv["volume"])


def test_aapl_split_2020_is_continuous_after_adjustment():
    prices, report = data.load_prices(symbols=["AAPL"], start="2020-08-25", end="2020-09-03")
    raw = prices.set_index("date")
    assert raw.loc["2020-08-31", "split_coefficient"] == 4.0
    raw_jump = raw["close_raw"].pct_change().loc["2020-08-31"]
    adj_jump = raw["close"].pct_change().loc["2020-08-31"]
    assert raw_jump < -0.7 and abs(adj_jump) < 0.1
    assert not {"large_move", "unrecorded_split", "split_without_move"} & set(report.issues["check"])


def test_clean_frame_has_no_issues(ohlcv):
    report = data.validate_prices(ohlcv)
    assert report.ok
    assert report.summary()["issues"].sum() == 0


def test_split_day_jump_is_not_flagged(ohlcv):
    f = ohlcv.copy()
    f.loc[10:29, ["open", "high", "low", "close"]] /= 2.0
    f.loc[10:29, "adjusted_close"] = f.loc[10:29, "close"] * 0.9  # backward adjustment: factor changes before the split
    f.loc[:9, "adjusted_close"] = f.loc[:9, "close"] * 0.45
    f.loc[10, "split_coefficient"] = 2.0
    report = data.validate_prices(f)
    assert report.ok, report.issues


def test_csv_folder_and_parquet_load_the_same(tmp_path, ohlcv):
    pq = tmp_path / "prices.parquet"
    ohlcv.to_parquet(pq)
    folder = tmp_path / "csv"
    folder.mkdir()
    for sym, g in ohlcv.groupby("symbol"):
        g.drop(columns=["symbol"]).to_csv(folder / f"{sym}.csv", index=False)  # symbol from file name
    a, ra = data.load_prices(pq)
    b, rb = data.load_prices(folder)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert ra.ok and rb.ok


def test_missing_column_is_a_clear_error(tmp_path, ohlcv):
    path = tmp_path / "bad.csv"
    ohlcv.drop(columns=["adjusted_close"]).to_csv(path, index=False)
    with pytest.raises(data.DataFormatError, match=r"bad.csv.*missing required column.*adjusted_close"):
        data.load_prices(path)
    pq = tmp_path / "bad.parquet"
    ohlcv.drop(columns=["volume"]).to_parquet(pq)
    with pytest.raises(data.DataFormatError, match="volume"):
        data.load_prices(pq)


def test_unparseable_dates_are_a_clear_error(tmp_path, ohlcv):
    f = ohlcv.astype({"date": str})
    f.loc[3, "date"] = "not-a-date"
    path = tmp_path / "dates.csv"
    f.to_csv(path, index=False)
    with pytest.raises(data.DataFormatError, match=r"dates.csv.*'date'.*row 3.*not-a-date"):
        data.load_prices(path)


def test_unknown_symbol_and_missing_file(tmp_path):
    with pytest.raises(data.DataFormatError, match="NOPE"):
        data.load_prices(symbols=["AAPL", "NOPE"], start="2021-01-01")
    with pytest.raises(data.DataFormatError, match="not found"):
        data.load_prices(tmp_path / "missing.parquet")


def test_select_universe_uses_no_data_after_as_of():
    f = make_ohlcv(symbols=("AAA", "BBB", "CCC"), days=300, seed=1)
    f.loc[f["symbol"] == "CCC", "volume"] *= 100  # CCC most liquid
    as_of = f["date"].iloc[260]
    first = data.select_universe(f, 1, as_of, min_history_days=200)
    later = f.copy()
    after = later["date"] > as_of
    later.loc[after & (later["symbol"] == "AAA"), "volume"] *= 10_000  # AAA becomes liquid only later
    assert data.select_universe(later, 1, as_of, min_history_days=200) == first == ["CCC"]
    with pytest.raises(ValueError, match="n=5"):
        data.select_universe(f, 5, as_of, min_history_days=200)


def test_wide_frames_keep_nan_for_late_listing(ohlcv):
    late = ohlcv[~((ohlcv["symbol"] == "BBB") & (ohlcv.index % 30 < 10))]
    wide = data.wide_fields(data.adjust_prices(late), ("close", "volume"))
    assert wide["close"]["BBB"].iloc[:10].isna().all() and wide["close"]["BBB"].iloc[10:].notna().all()
    assert wide["volume"].index.equals(wide["close"].index)


def test_data_sha256_matches_readme():
    assert data.data_sha256(data.sample_store()) == "093ce1c0e8340e0cf04a3dec880c542e43b5b58fb3d1d7a93387c378b7f8cf3c"


