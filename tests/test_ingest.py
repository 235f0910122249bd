"""Bad inputs a user's file can hold, and exactly what the user sees (the README's bad-input table)."""

import numpy as np
import pandas as pd
import pytest

from kit import data
from tests.conftest import make_ohlcv


def _csv(tmp_path, frame, name="prices.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _with_dates(frame, values):
    f = frame.copy()
    f["date"] = values
    return f


def test_integer_dates_parse_as_yyyymmdd_not_1970(tmp_path, ohlcv):
    ints = ohlcv["date"].dt.strftime("%Y%m%d").astype("int64")
    for path in (_csv(tmp_path, _with_dates(ohlcv, ints)), tmp_path / "p.parquet"):
        if path.suffix == ".parquet":
            _with_dates(ohlcv, ints).to_parquet(path)
        raw = data.read_prices(path)
        assert raw["date"].min() == pd.Timestamp("2020-01-01")
        pd.testing.assert_series_equal(raw["date"], ohlcv["date"].astype("datetime64[ns]"), check_names=False)
    bad = _with_dates(ohlcv, ints.where(ohlcv.index != 4, 20201345))
    with pytest.raises(data.DataFormatError, match=r"prices.csv.*'date'.*row 4 \(line 6\).*20201345.*YYYYMMDD"):
        data.read_prices(_csv(tmp_path, bad))


def test_day_first_dates_are_refused_unless_date_format_given(tmp_path, ohlcv):
    path = _csv(tmp_path, _with_dates(ohlcv, ohlcv["date"].dt.strftime("%d/%m/%Y")))
    with pytest.raises(data.DataFormatError, match=r"prices.csv.*'date' row 0.*'01/01/2020' is ambiguous.*date_format"):
        data.read_prices(path)
    raw = data.read_prices(path, date_format="%d/%m/%Y")
    pd.testing.assert_series_equal(raw["date"], ohlcv["date"].astype("datetime64[ns]"), check_names=False)


def test_symbols_are_text_na_is_a_symbol_and_1_never_merges_with_text_1(tmp_path, ohlcv):
    f = ohlcv.copy()
    f["symbol"] = f["symbol"].map({"AAA": "NA", "BBB": "1"})
    raw = data.read_prices(_csv(tmp_path, f))
    assert sorted(raw["symbol"].unique()) == ["1", "NA"]
    mixed = ohlcv.copy()
    mixed["symbol"] = mixed["symbol"].map({"AAA": 1, "BBB": "1"}).astype(object)
    with pytest.raises(data.DataFormatError, match=r"symbol.*'1' both as text and as a number"):
        data.validate_prices(mixed)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"empty\.csv: the file is empty"),
        (b"symbol,date,open,high,low,close,adjusted_close,volume\n", r"empty\.csv: the file holds a header but no rows"),
        (b"\xff\xfe\x00\x01garbage\x00", r"empty\.csv: not a readable CSV file"),
    ],
)
def test_empty_or_unreadable_csv(tmp_path, content, match):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(data.DataFormatError, match=match):
        data.load_prices(path)


def test_empty_and_truncated_parquet(tmp_path, ohlcv):
    empty = tmp_path / "zero.parquet"
    empty.write_bytes(b"")
    with pytest.raises(data.DataFormatError, match=r"zero\.parquet: not a readable Parquet file \(0 bytes"):
        data.load_prices(empty)
    good = tmp_path / "good.parquet"
    ohlcv.to_parquet(good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(data.DataFormatError, match=r"cut\.parquet: not a readable Parquet file"):
        data.load_prices(cut)


def test_timezone_aware_timestamps_become_new_york_dates(tmp_path, ohlcv):
    # daily bars stamped at New York midnight in UTC (05:00Z in winter), as Alpaca does
    utc = (ohlcv["date"].dt.tz_localize("America/New_York").dt.tz_convert("UTC")).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    raw = data.read_prices(_csv(tmp_path, _with_dates(ohlcv, utc)))
    pd.testing.assert_series_equal(raw["date"], ohlcv["date"].astype("datetime64[ns]"), check_names=False)
    # mixed offsets (New York's own, across a daylight-saving change) parse too
    later = make_ohlcv(days=60, start="2020-02-20")
    local = later["date"].dt.tz_localize("America/New_York").map(lambda t: t.isoformat())
    assert local.str[-6:].nunique() == 2
    raw = data.read_prices(_csv(tmp_path, _with_dates(later, local), "mixed.csv"))
    pd.testing.assert_series_equal(raw["date"], later["date"].astype("datetime64[ns]"), check_names=False)


def test_daily_bars_stamped_at_utc_midnight_are_refused(tmp_path, ohlcv):
    stamps = ohlcv["date"].dt.strftime("%Y-%m-%dT00:00:00Z")
    with pytest.raises(data.DataFormatError, match=r"fall on a weekend in America/New_York.*00:00 UTC"):
        data.read_prices(_csv(tmp_path, _with_dates(ohlcv, stamps)))
    naive_and_aware = ohlcv["date"].dt.strftime("%Y-%m-%d").where(ohlcv.index != 3, "2020-01-06T05:00:00Z")
    with pytest.raises(data.DataFormatError, match=r"mixes timezone-aware and naive.*row 0"):
        data.read_prices(_csv(tmp_path, _with_dates(ohlcv, naive_and_aware), "mix.csv"))


def test_thousands_separator_in_volume_names_file_column_row_and_value(tmp_path, ohlcv):
    f = ohlcv.astype({"volume": str})
    f.loc[7, "volume"] = "1,234,567"
    with pytest.raises(data.DataFormatError, match=r"prices.csv: column 'volume' row 7 \(line 9\): '1,234,567' is not a number.*thousands separators"):
        data.read_prices(_csv(tmp_path, f))


def test_non_finite_nan_and_negative_prices_are_findings_not_crashes(tmp_path, ohlcv):
    f = ohlcv.copy()
    f.loc[3, "close"] = np.inf
    f.loc[5, "close"] = np.nan
    f.loc[8, "close"] = -2.0
    path = tmp_path / "p.parquet"
    f.to_parquet(path)
    prices, report = data.load_prices(path)  # not strict: no exception
    got = report.issues.set_index(["check", "field"])
    assert ("non_finite_value", "close") in got.index and ("missing_value", "close") in got.index
    assert ("non_positive_price", "close") in got.index
    assert set(report.issues.loc[report.issues["field"] == "close", "severity"]) == {"error"}
    bad_dates = f.loc[[3, 5, 8], "date"]
    aaa = prices[(prices["symbol"] == "AAA") & prices["date"].isin(bad_dates)]
    assert aaa[["open", "high", "low", "close"]].isna().all().all()  # NaN, never a made-up price
    with pytest.raises(data.DataValidationError, match=r"missing_value \(error\): symbol='AAA' date=2020-01-08 field='close' value=nan \(and 3 more"):
        data.load_prices(path, strict=True)


def test_validate_prices_without_optional_columns(ohlcv):
    report = data.validate_prices(ohlcv.drop(columns=["dividend_amount", "split_coefficient"]))
    assert report.ok
    assert set(report.skipped) == {"dividend_without_adjustment", "dividend_exceeds_close", "split_without_move"}


def test_columns_match_case_insensitively_and_missing_ones_list_what_was_found(tmp_path, ohlcv):
    upper = ohlcv.rename(columns=lambda c: c.title())  # Symbol, Date, Open, ..., Adjusted_Close
    a = data.read_prices(_csv(tmp_path, upper, "upper.csv"))
    assert list(a.columns[:8]) == list(data.REQUIRED_COLUMNS)
    path = _csv(tmp_path, upper.drop(columns=["Volume"]), "novol.csv")
    with pytest.raises(data.DataFormatError, match=r"novol.csv: missing required column\(s\) \['volume'\]; columns found: Symbol, Date, Open.*case-insensitively"):
        data.read_prices(path)
    both = ohlcv.assign(Close=ohlcv["close"])
    with pytest.raises(data.DataFormatError, match=r"columns 'close' and 'Close' are the same column"):
        data.read_prices(_csv(tmp_path, both, "both.csv"))


def _hourly(symbols=("AAA", "BBB"), days=5, start="2021-03-01"):
    sess = data.sessions(start, pd.Timestamp(start) + pd.Timedelta(days=days * 2))[:days]
    rows = []
    rng = np.random.default_rng(0)
    for s in symbols:
        for d in sess:
            for h in range(7):  # 09:30, 10:30, ..., 15:30: seven bars a session
                t = d + pd.Timedelta(hours=9, minutes=30) + pd.Timedelta(hours=h)
                c = 100 + rng.normal()
                rows.append({"symbol": s, "date": t, "open": c, "high": c + 1, "low": c - 1, "close": c,
                             "adjusted_close": c, "volume": 1000.0})
    return pd.DataFrame(rows)


def test_hourly_bars_are_recognised_and_mixed_frequencies_refused(tmp_path, ohlcv):
    hourly = _hourly()
    path = tmp_path / "hourly.csv"
    hourly.to_csv(path, index=False)
    prices, report = data.load_prices(path)
    assert report.frequency == "1h" and report.bars_per_year == 7 * 252
    assert data.infer_frequency(ohlcv).name == "daily" and data.infer_frequency(ohlcv).bars_per_year == 252
    mixed = pd.concat([hourly[hourly["symbol"] == "AAA"], ohlcv[ohlcv["symbol"] == "BBB"]], ignore_index=True)
    path = tmp_path / "mixed.csv"
    mixed.to_csv(path, index=False)
    with pytest.raises(data.DataFormatError, match=r"mixed.csv: bars of different frequencies in one panel: 1h \(e.g. 'AAA'\), daily \(e.g. 'BBB'\)"):
        data.load_prices(path)


def test_unknown_symbol_and_not_a_number(tmp_path, ohlcv):
    path = tmp_path / "good.parquet"
    ohlcv.to_parquet(path)
    with pytest.raises(data.DataFormatError, match=r"good.parquet: unknown symbol\(s\) \['ZZZ'\]"):
        data.load_prices(path, symbols=["ZZZ"])
    f = ohlcv.astype({"close": str})
    f.loc[2, "close"] = "abc"
    with pytest.raises(data.DataFormatError, match=r"prices.csv: column 'close' row 2 \(line 4\): 'abc' is not a number"):
        data.read_prices(_csv(tmp_path, f))
