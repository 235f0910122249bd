"""Reading and adjusting daily OHLCV prices: the kit's one entry point for price data.

Frames come in two shapes:

* tidy long: one row per ``(symbol, date)``, sorted by symbol then date (what :func:`load_prices`
  returns);
* wide ``(T, N)``: index = dates, columns = symbols (strings), one frame per field
  (:func:`to_wide`, :func:`wide_fields`).

Prices in the store are unadjusted. :func:`adjust_prices` multiplies open, high, low and close by
``adjusted_close / close`` (the AlphaVantage split-and-dividend adjustment), so returns computed from
the adjusted close include dividends and are continuous across splits.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import REPO_ROOT, default_store
from .bars import EXCHANGE_TZ, infer_frequency
from .schema import (
    OPTIONAL_COLUMNS,
    PRICE_FIELDS,
    REQUIRED_COLUMNS,
    DataFormatError,
    _row_label,
    canonical_columns,
    symbols_as_text,
)
from .validate import ValidationReport, market_moves, validate_prices


def _resolve(source) -> Path:
    if source is None:
        return default_store()
    path = Path(source)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.exists():
        raise DataFormatError(f"price source not found: {str(source)!r}")
    return path


_NA_STRINGS = ("", "nan", "na", "n/a", "null", "none")
_AMBIGUOUS = re.compile(r"^\s*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(\s|$)")
_YMD8 = re.compile(r"^\s*\d{8}\s*$")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})\s*$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


def _fail_dates(values: pd.Series, bad, where: str, line_offset, hint: str) -> None:
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{where}: column 'date' has {int(bad.sum())} unparseable value(s); first at "
            f"{_row_label(i, line_offset)}: {values.iloc[i]!r}; {hint}"
        )


def _parse_dates(values: pd.Series, where: str, date_format: str | None = None, tz: str = EXCHANGE_TZ,
                 line_offset: int | None = None) -> tuple[pd.Series, bool]:
    """Dates as naive ``datetime64[ns]`` in the exchange's local time, and whether they came
    timezone-aware. Integer-like ``YYYYMMDD`` values parse as such; ``dd/mm/yyyy``-like values are
    refused unless ``date_format`` is given; timezone-aware values are converted to ``tz``."""
    hint = "use ISO dates (YYYY-MM-DD) or pass date_format (e.g. '%d/%m/%Y')"
    values = values.reset_index(drop=True)
    if values.isna().any():
        _fail_dates(values, values.isna(), where, line_offset, "the date is missing")
    if date_format:
        parsed = pd.to_datetime(values.astype(str).str.strip(), format=date_format, errors="coerce", utc=("%z" in date_format))
        _fail_dates(values, parsed.isna(), where, line_offset, f"it does not match date_format={date_format!r}")
    elif pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(dtype="float64")
        whole = np.isfinite(v) & (v == np.round(v))
        _fail_dates(values, ~whole, where, line_offset, "numeric dates must be integers YYYYMMDD")
        text = pd.Series(v.astype("int64").astype(str))
        parsed = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        _fail_dates(values, parsed.isna(), where, line_offset, "integer dates are read as YYYYMMDD (e.g. 20200102)")
    else:
        first = values.iloc[0]
        if not isinstance(first, str):  # datetime.date / datetime objects (e.g. Parquet date32)
            parsed = pd.to_datetime(values, errors="coerce", utc=None)
            _fail_dates(values, parsed.isna(), where, line_offset, hint)
        else:
            text = values.astype(str).str.strip()
            if text.str.match(_YMD8).all():
                parsed = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
                _fail_dates(values, parsed.isna(), where, line_offset, "8-digit dates are read as YYYYMMDD")
            else:
                amb = text.str.match(_AMBIGUOUS)
                if amb.any():
                    i = int(np.flatnonzero(amb.to_numpy())[0])
                    raise DataFormatError(
                        f"{where}: column 'date' {_row_label(i, line_offset)}: {values.iloc[i]!r} is ambiguous "
                        "(day-first or month-first?); pass date_format='%d/%m/%Y' or '%m/%d/%Y' (or use ISO dates)"
                    )
                aware = text.str.contains(_OFFSET)
                if aware.any() and not aware.all():
                    i = int(np.flatnonzero(~aware.to_numpy())[0])
                    raise DataFormatError(
                        f"{where}: column 'date' mixes timezone-aware and naive timestamps; first naive at "
                        f"{_row_label(i, line_offset)}: {values.iloc[i]!r}; give every timestamp an offset or none"
                    )
                parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(aware.any()))
                _fail_dates(values, parsed.isna(), where, line_offset, hint)
    was_aware = getattr(parsed.dt, "tz", None) is not None
    if was_aware:
        parsed = parsed.dt.tz_convert(tz).dt.tz_localize(None)
    return parsed.astype("datetime64[ns]"), was_aware


def _numeric(values: pd.Series, col: str, where: str, line_offset: int | None = None) -> pd.Series:
    """A column as float64; NA-like strings become NaN (a finding later), anything else that is not
    a number raises naming the row and value."""
    values = values.reset_index(drop=True)
    if pd.api.types.is_bool_dtype(values):
        raise DataFormatError(f"{where}: column {col!r} holds booleans, not numbers")
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = values.astype(str).str.strip()
    na = text.str.lower().isin(_NA_STRINGS) | values.isna()
    out = pd.to_numeric(text.where(~na, None), errors="coerce").astype("float64")
    bad = (out.isna() & ~na).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        val = text.iloc[i]
        hint = "; thousands separators are not accepted: write 1234567, not 1,234,567" if _THOUSANDS.match(val) else ""
        raise DataFormatError(
            f"{where}: column {col!r} {_row_label(i, line_offset)}: {val!r} is not a number "
            f"({int(bad.sum())} such value(s)){hint}"
        )
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    where = str(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{where}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{where}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if "symbol" not in [str(c).strip().lower() for c in frame.columns]:
        # One file per symbol may omit the symbol column: the file stem is the symbol.
        frame.insert(0, "symbol", path.stem)
    return frame


def _read_parquet(path: Path, symbols=None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(path)
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        size = path.stat().st_size
        raise DataFormatError(
            f"{where}: not a readable Parquet file ({size} bytes; empty, truncated or another format): {exc}"
        ) from None
    mapping = canonical_columns(names, where)
    inverse = {v: k for k, v in mapping.items()}
    filters = None
    if symbols is not None:
        filters = [(inverse["symbol"], "in", [str(s) for s in symbols])]
    try:
        frame = pq.read_table(path, columns=list(mapping), filters=filters).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DataFormatError(f"{where}: cannot read the Parquet data (truncated or corrupt?): {exc}") from None
    return frame


def read_prices(source=None, symbols=None, start=None, end=None, *, date_format: str | None = None,
                exchange_tz: str = EXCHANGE_TZ) -> pd.DataFrame:
    """Read raw (unadjusted) prices as a tidy long frame, in file order.

    Reading never corrupts silently: every failure is a :class:`DataFormatError` naming the file and,
    where known, the row, column and value, with a hint. Column names are matched case-insensitively;
    symbols are read as text (``NA`` is a symbol, not a missing value; ``1`` and ``"1"`` are never
    merged); dates parse as ISO dates or timestamps, 8-digit integers as ``YYYYMMDD``, and
    ``dd/mm/yyyy``-like dates only with ``date_format``. Timezone-aware timestamps (also mixed
    offsets) are converted to ``exchange_tz`` (New York by default) and kept as naive local times;
    daily bars stamped at a time of day (one bar per symbol and local date) become that local date,
    and are refused when that puts any bar on a weekend (the sign of daily bars stamped at 00:00 UTC,
    which is the previous evening in New York). Non-finite numbers (``inf``) are read as they are
    and reported by :func:`validate_prices`; NA-like strings (empty, ``NaN``, ``NA``, ``null``) in
    number columns become NaN and are reported too.

    Parameters
    ----------
    source : path-like, optional
        A Parquet file, a CSV file, or a folder of CSV files (one or many symbols each). Default:
        :func:`default_store`.
    symbols : sequence of str, optional
        Keep only these symbols. Unknown symbols raise.
    start, end : date-like, optional
        Inclusive date range.
    date_format : str, optional
        ``strptime`` format of the date column (needed for day-first or month-first dates).
    exchange_tz : str
        Time zone that timezone-aware timestamps are converted to.

    Returns
    -------
    DataFrame
        Columns ``REQUIRED_COLUMNS`` plus ``dividend_amount`` and ``split_coefficient`` (filled with
        their neutral values when absent); ``symbol`` object (str), ``date`` ``datetime64[ns]``
        (midnight for daily bars, the bar's local start time for intraday bars), prices and volume
        float64.

    Raises
    ------
    DataFormatError
        Missing, empty, truncated or unreadable file; missing column (lists the columns found);
        unparseable, ambiguous or mixed-timezone date; a value that is not a number; a missing or
        clashing symbol; a requested symbol that is not present.
    """
    path = _resolve(source)
    where = str(path)
    line_offset = None
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise DataFormatError(f"{where}: folder holds no *.csv files")
        parts = []
        for f in files:
            part = _read_one(f, date_format, exchange_tz)
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
    elif path.suffix.lower() == ".csv":
        frame = _read_one(path, date_format, exchange_tz)
    elif path.suffix.lower() in (".parquet", ".pq"):
        table = _read_parquet(path, symbols)
        if symbols is not None and table.empty:
            raise DataFormatError(f"{where}: unknown symbol(s) {[str(s) for s in symbols][:10]} (field 'symbols')")
        frame = _normalise_frame(table, where, date_format, exchange_tz, line_offset)
    else:
        raise DataFormatError(f"{where}: unsupported file type {path.suffix!r} (use .parquet, .csv or a folder)")

    if symbols is not None:
        symbols = [str(s) for s in symbols]
        present = set(frame["symbol"].unique())
        unknown = [s for s in symbols if s not in present]
        if unknown:
            raise DataFormatError(f"{where}: unknown symbol(s) {unknown[:10]} (field 'symbols')")
        frame = frame[frame["symbol"].isin(symbols)]
    if start is not None:
        frame = frame[frame["date"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["date"] < pd.Timestamp(end) + pd.Timedelta(days=1)]
    cols = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS)
    return frame[cols].reset_index(drop=True)


def _read_one(path: Path, date_format, exchange_tz) -> pd.DataFrame:
    return _normalise_frame(_read_csv(path), str(path), date_format, exchange_tz, 2)


def _normalise_frame(frame: pd.DataFrame, where: str, date_format, exchange_tz, line_offset) -> pd.DataFrame:
    """Schema names, types and dates for one file's frame (see :func:`read_prices`)."""
    mapping = canonical_columns(frame.columns, where)
    frame = frame[list(mapping)].rename(columns=mapping).reset_index(drop=True)
    if frame.empty:
        raise DataFormatError(f"{where}: the file holds a header but no rows")
    frame["symbol"] = symbols_as_text(frame["symbol"], where, line_offset)
    frame["date"], aware = _parse_dates(frame["date"], where, date_format, exchange_tz, line_offset)
    day = frame["date"].dt.normalize()
    if (frame["date"] != day).any() and not frame.assign(_d=day).duplicated(["symbol", "_d"]).any():
        # one bar per symbol and local date, stamped at a time of day: daily bars
        if aware and (day.dt.day_of_week >= 5).any():
            i = int(np.flatnonzero((day.dt.day_of_week >= 5).to_numpy())[0])
            raise DataFormatError(
                f"{where}: daily bars with timezone-aware timestamps fall on a weekend in {exchange_tz} "
                f"(first at {_row_label(i, line_offset)}: {frame['date'].iloc[i]}); they look stamped at 00:00 "
                "UTC of their date: strip the offset (the date is then read as it is written), or stamp them in local time"
            )
        frame["date"] = day
    for col, neutral in OPTIONAL_COLUMNS.items():
        if col not in frame.columns:
            frame[col] = neutral
    for col in (*PRICE_FIELDS, "volume", *OPTIONAL_COLUMNS):
        frame[col] = _numeric(frame[col], col, where, line_offset)
    return frame


def trading_calendar(source=None) -> pd.DatetimeIndex:
    """All distinct dates of a source (the union over its symbols), sorted; the reference calendar.

    For the committed store this is the US trading calendar of 1999-11-01 to 2021-04-21 (equal to
    the ``XNYS`` sessions of :func:`kit.data.exchange_calendar` over those dates).
    """
    path = _resolve(source)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        mapping = canonical_columns(pq.read_schema(path).names, str(path))
        date_col = next(k for k, v in mapping.items() if v == "date")
        dates = pd.read_parquet(path, columns=[date_col])[date_col]
        parsed, _ = _parse_dates(pd.Series(dates.unique()), str(path))
        return pd.DatetimeIndex(parsed).sort_values()
    return pd.DatetimeIndex(read_prices(path)["date"].unique()).sort_values()


@functools.lru_cache(maxsize=4)
def _market_cached(path: str, mtime: float, size: int) -> pd.DataFrame:
    import pyarrow.parquet as pq

    mapping = canonical_columns(pq.read_schema(path).names, path)
    inv = {v: k for k, v in mapping.items()}
    cols = [inv["symbol"], inv["date"], inv["adjusted_close"]]
    frame = pd.read_parquet(path, columns=cols).rename(columns=mapping)
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    return market_moves(frame)


def source_market_moves(source=None) -> pd.DataFrame | None:
    """:func:`kit.data.validate.market_moves` of every symbol of a Parquet source (cached per file
    version), so that validating a few symbols of the store still knows the market's move of each
    day; None for CSV sources."""
    path = _resolve(source)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return None
    st = path.stat()
    return _market_cached(str(path), st.st_mtime, st.st_size)


def adjust_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Split- and dividend-adjust open, high, low and close by ``adjusted_close / close``.

    Returns a new tidy frame sorted by (symbol, date), duplicates dropped (first kept), with the raw
    close kept as ``close_raw`` and the factor as ``adj_factor``; after adjustment ``close`` equals
    ``adjusted_close``. Volume stays in traded shares (unadjusted). Where the factor is undefined (a
    close or adjusted close that is missing, infinite or not positive) the row's adjusted prices are
    NaN: never a made-up value; :func:`validate_prices` reports those rows (``missing_value``,
    ``non_finite_value``, ``non_positive_price``) and the cleaning policy decides what to do.
    """
    frame = prices.drop_duplicates(["symbol", "date"], keep="first").sort_values(["symbol", "date"], kind="stable")
    close = frame["close"].to_numpy(dtype="float64")
    adj = frame["adjusted_close"].to_numpy(dtype="float64")
    ok = np.isfinite(close) & (close > 0) & np.isfinite(adj) & (adj > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(ok, adj / np.where(ok, close, 1.0), np.nan)
    out = frame.copy()
    out["close_raw"] = close
    out["adj_factor"] = factor
    for col in ("open", "high", "low", "close"):
        vals = out[col].to_numpy(dtype="float64") * factor
        out[col] = np.where(np.isfinite(vals), vals, np.nan)
    return out.reset_index(drop=True)


def load_prices(
    source=None, symbols=None, start=None, end=None, *, adjust: bool = True, strict: bool = False,
    date_format: str | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read, validate and (by default) adjust prices: the kit's one entry point for price data.

    Parameters
    ----------
    source : path-like, optional
        Parquet file, CSV file or folder of CSVs with the store's columns (default: the committed
        S&P 500 store, or ``$KIT_DATA``).
    symbols : sequence of str, optional
        Symbols to load (default all).
    start, end : date-like, optional
        Inclusive date range.
    adjust : bool
        Apply :func:`adjust_prices` (default True).
    strict : bool
        Raise :class:`DataValidationError` on the first validation finding of severity ``error``.
    date_format : str, optional
        See :func:`read_prices`.

    Returns
    -------
    (prices, report) : (DataFrame, ValidationReport)
        ``prices`` is tidy long, sorted by symbol then date, duplicates dropped; ``report`` holds
        every finding, the bar frequency (``report.frequency``) and its ``bars_per_year``.

    Raises
    ------
    DataFormatError
        See :func:`read_prices`; also a panel that mixes bar frequencies (:func:`infer_frequency`).
    DataValidationError
        In strict mode.
    """
    raw = read_prices(source, symbols, start, end, date_format=date_format)
    path = _resolve(source)
    freq = infer_frequency(raw, str(path))
    calendar = trading_calendar(path) if path.suffix.lower() in (".parquet", ".pq") and not freq.intraday else None
    if calendar is not None:
        if start is not None:
            calendar = calendar[calendar >= pd.Timestamp(start)]
        if end is not None:
            calendar = calendar[calendar <= pd.Timestamp(end)]
    market = source_market_moves(path) if symbols is not None and not freq.intraday else None
    report = validate_prices(raw, calendar=calendar, strict=strict, market=market, frequency=freq.name,
                             bars_per_year=freq.bars_per_year)
    prices = adjust_prices(raw) if adjust else raw.drop_duplicates(["symbol", "date"]).sort_values(["symbol", "date"]).reset_index(drop=True)
    return prices, report


def to_wide(prices: pd.DataFrame, field: str = "close") -> pd.DataFrame:
    """One field as a wide ``(T, N)`` float64 frame: index = dates, columns = symbols (str), NaN where
    a symbol has no row (before listing, after delisting, gaps). Nothing is filled.

    Raises
    ------
    KeyError
        ``field`` is not a column of ``prices``.
    """
    if field not in prices.columns:
        raise KeyError(f"field {field!r} not in prices columns {list(prices.columns)}")
    wide = prices.pivot_table(index="date", columns="symbol", values=field, aggfunc="first", dropna=False)
    wide.columns = wide.columns.astype(str)
    wide.columns.name = "symbol"
    return wide.sort_index().astype("float64")



def wide_fields(prices: pd.DataFrame, fields=("open", "high", "low", "close", "volume")) -> dict[str, pd.DataFrame]:
    """Several fields as aligned wide ``(T, N)`` frames (same dates and symbols for every field)."""
    frames = {f: to_wide(prices, f) for f in fields}
    index = frames[fields[0]].index
    columns = frames[fields[0]].columns
    return {f: w.reindex(index=index, columns=columns) for f, w in frames.items()}



def data_sha256(source=None) -> str:
    """sha256 hex digest of a data source (a file, or every file of a folder in name order)."""
    path = _resolve(source)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()

