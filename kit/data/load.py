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

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import REPO_ROOT, default_store
from .schema import (
    OPTIONAL_COLUMNS,
    PRICE_FIELDS,
    REQUIRED_COLUMNS,
    DataFormatError,
    DataValidationError,
    _check_columns,
)
from .validate import ValidationReport, validate_prices


def _resolve(source) -> Path:
    if source is None:
        return default_store()
    path = Path(source)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.exists():
        raise DataFormatError(f"price source not found: {str(source)!r}")
    return path



def _parse_dates(values: pd.Series, where: str) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce")
    bad = parsed.isna() & values.notna()
    bad |= values.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"{where}: column 'date' has {int(bad.sum())} unparseable value(s); first at row {i}: "
            f"{values.iloc[i]!r}"
        )
    return parsed.astype("datetime64[ns]")



def _read_one_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if "symbol" not in frame.columns:
        # One file per symbol may omit the symbol column: the file stem is the symbol.
        frame.insert(0, "symbol", path.stem)
    _check_columns(frame.columns, str(path))
    frame["date"] = _parse_dates(frame["date"], str(path))
    return frame



def read_prices(source=None, symbols=None, start=None, end=None) -> pd.DataFrame:
    """Read raw (unadjusted) prices as a tidy long frame, in file order.

    Parameters
    ----------
    source : path-like, optional
        A Parquet file, a CSV file, or a folder of CSV files (one or many symbols each). Default:
        :func:`default_store`.
    symbols : sequence of str, optional
        Keep only these symbols. Unknown symbols raise.
    start, end : date-like, optional
        Inclusive date range.

    Returns
    -------
    DataFrame
        Columns ``REQUIRED_COLUMNS`` plus ``dividend_amount`` and ``split_coefficient`` (filled with
        their neutral values when absent); ``date`` is ``datetime64[ns]``, prices float64.

    Raises
    ------
    DataFormatError
        Missing file, missing column, unparseable date, or a requested symbol that is not present.
    """
    path = _resolve(source)
    where = str(path)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise DataFormatError(f"{where}: folder holds no *.csv files")
        frame = pd.concat([_read_one_csv(f) for f in files], ignore_index=True)
    elif path.suffix.lower() == ".csv":
        frame = _read_one_csv(path)
    elif path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        _check_columns(names, where)
        filters = [("symbol", "in", list(symbols))] if symbols is not None else None
        frame = pd.read_parquet(path, filters=filters)
        frame["date"] = _parse_dates(frame["date"], where)
    else:
        raise DataFormatError(f"{where}: unsupported file type {path.suffix!r} (use .parquet, .csv or a folder)")

    for col, neutral in OPTIONAL_COLUMNS.items():
        if col not in frame.columns:
            frame[col] = neutral
    frame["symbol"] = frame["symbol"].astype(str)
    for col in (*PRICE_FIELDS, *OPTIONAL_COLUMNS):
        try:
            frame[col] = pd.to_numeric(frame[col]).astype("float64")
        except (ValueError, TypeError) as exc:
            raise DataFormatError(f"{where}: column {col!r} is not numeric ({exc})") from exc
    frame["volume"] = pd.to_numeric(frame["volume"], errors="raise").astype("float64")

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
        frame = frame[frame["date"] <= pd.Timestamp(end)]
    cols = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS)
    return frame[cols].reset_index(drop=True)



def trading_calendar(source=None) -> pd.DatetimeIndex:
    """All distinct dates of a source (the union over its symbols), sorted; the reference calendar.

    For the committed store this is the US trading calendar of 1999-11-01 to 2021-04-21.
    """
    path = _resolve(source)
    if path.suffix.lower() in (".parquet", ".pq"):
        dates = pd.read_parquet(path, columns=["date"])["date"]
        return pd.DatetimeIndex(pd.to_datetime(pd.Series(dates.unique()))).sort_values()
    return pd.DatetimeIndex(read_prices(path)["date"].unique()).sort_values()



def adjust_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Split- and dividend-adjust open, high, low and close by ``adjusted_close / close``.

    Returns a new tidy frame sorted by (symbol, date), duplicates dropped (first kept), with the raw
    close kept as ``close_raw`` and the factor as ``adj_factor``; after adjustment ``close`` equals
    ``adjusted_close``. Volume stays in traded shares (unadjusted).

    Raises
    ------
    DataValidationError
        When ``close`` is not positive (the factor would be undefined), naming the first such row.
    """
    frame = prices.drop_duplicates(["symbol", "date"], keep="first").sort_values(["symbol", "date"], kind="stable")
    close = frame["close"].to_numpy(dtype="float64")
    bad = ~(close > 0)
    if bad.any():
        row = frame.iloc[int(np.flatnonzero(bad)[0])]
        raise DataValidationError("non_positive_price", row["symbol"], row["date"], "close", row["close"], int(bad.sum()))
    factor = frame["adjusted_close"].to_numpy(dtype="float64") / close
    out = frame.copy()
    out["close_raw"] = close
    out["adj_factor"] = factor
    for col in ("open", "high", "low", "close"):
        out[col] = out[col].to_numpy(dtype="float64") * factor
    return out.reset_index(drop=True)



def load_prices(
    source=None, symbols=None, start=None, end=None, *, adjust: bool = True, strict: bool = False
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
        Raise :class:`DataValidationError` on the first validation finding.

    Returns
    -------
    (prices, report) : (DataFrame, ValidationReport)
        ``prices`` is tidy long, sorted by symbol then date, duplicates dropped.

    Raises
    ------
    DataFormatError, DataValidationError
    """
    raw = read_prices(source, symbols, start, end)
    path = _resolve(source)
    calendar = trading_calendar(path) if path.suffix.lower() in (".parquet", ".pq") else None
    if calendar is not None:
        if start is not None:
            calendar = calendar[calendar >= pd.Timestamp(start)]
        if end is not None:
            calendar = calendar[calendar <= pd.Timestamp(end)]
    report = validate_prices(raw, calendar=calendar, strict=strict)
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

