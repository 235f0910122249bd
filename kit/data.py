"""Loading, validating and adjusting daily OHLCV prices.

The committed store (``data/sp500_daily_1999_2021.parquet``) and a user's own files share one
schema (see ``data/README.md``)::

    symbol (str), date (date), open, high, low, close, adjusted_close (float64, USD per share),
    volume (int64, shares), dividend_amount (float64, USD per share, optional, default 0.0),
    split_coefficient (float64, new shares per old share, optional, default 1.0)

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
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "DataFormatError",
    "DataValidationError",
    "ValidationReport",
    "REQUIRED_COLUMNS",
    "PRICE_FIELDS",
    "default_store",
    "sample_store",
    "read_prices",
    "validate_prices",
    "adjust_prices",
    "load_prices",
    "to_wide",
    "wide_fields",
    "select_universe",
    "data_sha256",
    "trading_calendar",
    "load_universe",
    "universe_summary",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRED_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adjusted_close", "volume")
OPTIONAL_COLUMNS = {"dividend_amount": 0.0, "split_coefficient": 1.0}
PRICE_FIELDS = ("open", "high", "low", "close", "adjusted_close")
JUMP_THRESHOLD = 0.5


class DataFormatError(ValueError):
    """A file cannot be read as price data: a missing column, unparseable dates, a missing file.

    The message names the file and the offending column, row or value.
    """


class DataValidationError(ValueError):
    """A price record failed a validation check (raised in strict mode).

    Attributes ``check``, ``symbol``, ``date``, ``field`` and ``value`` name the first failing record;
    the message lists them and how many further issues were found.
    """

    def __init__(self, check: str, symbol: str, date, field: str, value, n_issues: int = 1):
        self.check, self.symbol, self.date, self.field, self.value = check, symbol, date, field, value
        self.n_issues = n_issues
        when = pd.Timestamp(date).date() if date is not None and not pd.isna(date) else date
        msg = f"{check}: symbol={symbol!r} date={when} field={field!r} value={value!r}"
        if n_issues > 1:
            msg += f" (and {n_issues - 1} more issues; run validate_prices for the full report)"
        super().__init__(msg)


@dataclass
class ValidationReport:
    """Result of :func:`validate_prices`.

    Attributes
    ----------
    issues : DataFrame
        One row per finding with columns ``check, symbol, date, field, value, message``.
    n_rows, n_symbols : int
        Size of the validated frame.
    calendar_days : int
        Number of distinct trading days of the reference calendar used for the missing-day check.
    """

    issues: pd.DataFrame
    n_rows: int
    n_symbols: int
    calendar_days: int
    checks: tuple[str, ...] = field(
        default=(
            "duplicate_row",
            "date_order",
            "missing_value",
            "non_positive_price",
            "ohlc_inconsistent",
            "non_positive_volume",
            "missing_day",
            "jump_without_split",
            "stale_quote",
            "bad_row",
            "split_without_move",
            "dividend_without_adjustment",
            "adjustment_without_event",
        )
    )

    @property
    def ok(self) -> bool:
        """True when no check found anything."""
        return self.issues.empty

    def summary(self) -> pd.DataFrame:
        """Counts of findings per check (every check listed, zeros included) and symbols affected."""
        rows = []
        for check in self.checks:
            sub = self.issues[self.issues["check"] == check]
            rows.append({"check": check, "issues": len(sub), "symbols": sub["symbol"].nunique()})
        return pd.DataFrame(rows).set_index("check")

    def raise_if_any(self) -> None:
        """Raise :class:`DataValidationError` for the first finding, if there is one."""
        if self.issues.empty:
            return
        first = self.issues.iloc[0]
        raise DataValidationError(
            first["check"], first["symbol"], first["date"], first["field"], first["value"], len(self.issues)
        )

    def __repr__(self) -> str:  # pragma: no cover - display only
        return (
            f"ValidationReport(rows={self.n_rows}, symbols={self.n_symbols}, issues={len(self.issues)})\n"
            + self.summary().to_string()
        )


def default_store() -> Path:
    """Path of the full committed store, or of ``$KIT_DATA`` when that variable is set."""
    env = os.environ.get("KIT_DATA")
    return Path(env) if env else REPO_ROOT / "data" / "sp500_daily_1999_2021.parquet"


def sample_store() -> Path:
    """Path of the committed 10-symbol sample (2010-01-04 to 2021-04-21)."""
    return REPO_ROOT / "data" / "sp500_daily_sample.parquet"


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


def _check_columns(columns, where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataFormatError(
            f"{where}: missing required column(s) {missing}; expected {list(REQUIRED_COLUMNS)}"
        )


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


def _issues(check, frame, mask, field, values, message) -> pd.DataFrame:
    idx = np.flatnonzero(np.asarray(mask))
    if len(idx) == 0:
        return pd.DataFrame(columns=["check", "symbol", "date", "field", "value", "message"])
    sub = frame.iloc[idx]
    vals = np.asarray(values)[idx] if values is not None else [None] * len(idx)
    return pd.DataFrame(
        {
            "check": check,
            "symbol": sub["symbol"].to_numpy(),
            "date": sub["date"].to_numpy(),
            "field": field,
            "value": list(vals),
            "message": message,
        }
    )


def validate_prices(prices: pd.DataFrame, calendar=None, strict: bool = False) -> ValidationReport:
    """Check raw prices and report every finding.

    Checks (each finding names symbol, date, field and value):

    ``duplicate_row``       a second row for the same (symbol, date);
    ``date_order``          a date not after the previous row's date within a symbol (file order);
    ``missing_value``       NaN in a price or volume field;
    ``non_positive_price``  open/high/low/close/adjusted_close <= 0;
    ``ohlc_inconsistent``   high below max(open, close, low) or low above min(open, close, high);
    ``non_positive_volume`` volume <= 0 (zero-volume days are suspicious in a liquid universe);
    ``missing_day``         a calendar trading day between a symbol's first and last date with no row;
    ``jump_without_split``  |close_t / close_{t-1} - 1| > 50% with split_coefficient == 1 on day t;
    ``stale_quote``         open = high = low = close and volume = 0 (a quote carried, not a trade);
    ``bad_row``             every price of day t is off by one factor f (|f - 1| > 25%, the four
                            prices' factors within 5% of each other) from the day before, and the
                            day after returns to within 10% of the day before (value: f);
    ``split_without_move``  a split coefficient s != 1 but the raw close does not move by about
                            1/s: |close_t / close_{t-1} * s - 1| > 25% (value: that product);
    ``dividend_without_adjustment``  a dividend D on day t but the adjustment factor
                            ``a = adjusted_close / close`` does not change by ``-D / close_{t-1}``
                            (|a_{t-1}/a_t - 1 + D / close_{t-1}| > 0.5%; value: the difference);
    ``adjustment_without_event``  the factor a changes (|a_{t-1}/a_t - 1| > 1e-6) on a day with no
                            dividend and no split (value: the change).

    Parameters
    ----------
    prices : DataFrame
        Raw (unadjusted) tidy frame as returned by :func:`read_prices`, in file order.
    calendar : DatetimeIndex, optional
        Reference trading days. Default: the union of dates in ``prices``.
    strict : bool
        Raise :class:`DataValidationError` for the first finding instead of returning.

    Returns
    -------
    ValidationReport
    """
    _check_columns(prices.columns, "validate_prices(prices)")
    frame = prices.reset_index(drop=True)
    parts = []
    dup = frame.duplicated(["symbol", "date"], keep="first").to_numpy()
    parts.append(_issues("duplicate_row", frame, dup, "date", frame["date"], "second row for (symbol, date)"))

    same_symbol = (frame["symbol"] == frame["symbol"].shift(1)).to_numpy()
    not_after = (frame["date"] <= frame["date"].shift(1)).to_numpy() & same_symbol & ~dup
    parts.append(_issues("date_order", frame, not_after, "date", frame["date"], "date not after previous row"))

    for col in (*PRICE_FIELDS, "volume"):
        vals = frame[col].to_numpy(dtype="float64")
        parts.append(_issues("missing_value", frame, np.isnan(vals), col, vals, "missing value"))
    for col in PRICE_FIELDS:
        vals = frame[col].to_numpy(dtype="float64")
        parts.append(_issues("non_positive_price", frame, vals <= 0, col, vals, "price <= 0"))

    o, h, lo, c = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    tol = 1e-9 * np.nanmax(np.abs(np.stack([o, h, lo, c])), axis=0, initial=1.0)
    with np.errstate(invalid="ignore"):
        high_bad = h < np.maximum.reduce([o, c, lo]) - tol
        low_bad = lo > np.minimum.reduce([o, c, h]) + tol
    parts.append(_issues("ohlc_inconsistent", frame, high_bad, "high", h, "high below max(open, close, low)"))
    parts.append(_issues("ohlc_inconsistent", frame, low_bad, "low", lo, "low above min(open, close, high)"))

    vol = frame["volume"].to_numpy(dtype="float64")
    parts.append(_issues("non_positive_volume", frame, vol <= 0, "volume", vol, "volume <= 0"))

    cal = pd.DatetimeIndex(calendar if calendar is not None else frame["date"].unique()).sort_values()
    missing_rows = []
    for sym, dates in frame.groupby("symbol", sort=False)["date"]:
        lo, hi = dates.min(), dates.max()
        expected = cal[(cal >= lo) & (cal <= hi)]
        gone = expected.difference(pd.DatetimeIndex(dates.unique()))
        for d in gone:
            missing_rows.append((sym, d))
    if missing_rows:
        parts.append(
            pd.DataFrame(
                {
                    "check": "missing_day",
                    "symbol": [s for s, _ in missing_rows],
                    "date": [d for _, d in missing_rows],
                    "field": "date",
                    "value": [d for _, d in missing_rows],
                    "message": "trading day inside the symbol's range has no row",
                }
            )
        )

    ordered = frame[~dup].sort_values(["symbol", "date"], kind="stable")
    prev = ordered.groupby("symbol", sort=False)["close"].shift(1)
    change = (ordered["close"] / prev - 1.0).to_numpy()
    with np.errstate(invalid="ignore"):
        jump = (np.abs(change) > JUMP_THRESHOLD) & (ordered["split_coefficient"].to_numpy() == 1.0)
    parts.append(
        _issues("jump_without_split", ordered.reset_index(drop=True), jump, "close", change, "close-to-close change over 50% without a split")
    )

    parts.extend(_event_checks(ordered.reset_index(drop=True)))

    parts = [p for p in parts if not p.empty]
    issues = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["check", "symbol", "date", "field", "value", "message"])
    )
    report = ValidationReport(
        issues=issues, n_rows=len(frame), n_symbols=frame["symbol"].nunique(), calendar_days=len(cal)
    )
    if strict:
        report.raise_if_any()
    return report


def _event_checks(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The checks that compare a day with its neighbours (frame sorted by symbol, date; no dups)."""
    g = frame.groupby("symbol", sort=False)
    o, h, lo, c = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    prev = {k: g[k].shift(1).to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "adjusted_close")}
    nxt_close = g["close"].shift(-1).to_numpy(dtype="float64")
    split = frame["split_coefficient"].to_numpy(dtype="float64")
    nxt_split = g["split_coefficient"].shift(-1).to_numpy(dtype="float64")
    div = frame["dividend_amount"].to_numpy(dtype="float64")
    vol = frame["volume"].to_numpy(dtype="float64")
    out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        stale = (o == h) & (h == lo) & (lo == c) & (vol == 0)
        out.append(_issues("stale_quote", frame, stale, "close", c, "open = high = low = close with zero volume"))

        f = c / prev["close"]
        ratios = np.stack([o / prev["open"], h / prev["high"], lo / prev["low"], f])
        consistent = (np.max(ratios, axis=0) / np.min(ratios, axis=0)) < 1.05  # NaN -> False
        back = np.abs(nxt_close / prev["close"] - 1.0) < 0.10
        bad = (np.abs(f - 1.0) > 0.25) & consistent & back & (split == 1.0) & (nxt_split == 1.0)
        out.append(_issues("bad_row", frame, bad, "close", f, "all prices off by one factor from both neighbours"))

        moved = c / prev["close"] * split
        no_move = (split != 1.0) & (np.abs(moved - 1.0) > 0.25)
        out.append(_issues("split_without_move", frame, no_move, "split_coefficient", moved, "split recorded but the close did not move by 1/split"))

        a = frame["adjusted_close"].to_numpy(dtype="float64") / c
        a_prev = prev["adjusted_close"] / prev["close"]
        change = a_prev / a - 1.0
        expected = -div / prev["close"]
        div_bad = (div > 0) & (split == 1.0) & (np.abs(change - expected) > 0.005)
        out.append(_issues("dividend_without_adjustment", frame, div_bad, "dividend_amount", change - expected, "dividend without the matching change of adjusted_close / close"))

        no_event = (div == 0) & (split == 1.0) & (np.abs(change) > 1e-6)
        out.append(_issues("adjustment_without_event", frame, no_event, "adjusted_close", change, "adjusted_close / close changed without a dividend or split"))
    return out


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


def select_universe(prices: pd.DataFrame, n: int, as_of, lookback_days: int = 252, min_history_days: int = 252) -> list[str]:
    """Pick the ``n`` most liquid symbols as known on ``as_of``, without look-ahead.

    Liquidity is the median daily dollar volume (raw close x volume) over the ``lookback_days``
    trading days up to and including ``as_of``; only symbols with at least ``min_history_days`` rows
    up to ``as_of`` qualify. No data after ``as_of`` is read, so selecting at the start of the
    sample does not peek at which stocks later did well. (The store itself holds only the S&P 500
    constituents of 2021, a survivorship bias that no selection rule can remove.)

    Returns
    -------
    list of str, sorted alphabetically.

    Raises
    ------
    ValueError
        Fewer than ``n`` symbols qualify (field ``n``).
    """
    as_of = pd.Timestamp(as_of)
    hist = prices[prices["date"] <= as_of]
    close = hist["close_raw"] if "close_raw" in hist.columns else hist["close"]
    hist = hist.assign(dollar_volume=close * hist["volume"])
    counts = hist.groupby("symbol").size()
    eligible = counts[counts >= min_history_days].index
    recent = hist[hist["symbol"].isin(eligible)].groupby("symbol").tail(lookback_days)
    liquidity = recent.groupby("symbol")["dollar_volume"].median().sort_values(ascending=False, kind="stable")
    if len(liquidity) < n:
        raise ValueError(f"n={n}: only {len(liquidity)} symbols have {min_history_days} days of history by {as_of.date()}")
    return sorted(liquidity.index[:n].astype(str))


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


def load_universe(
    source=None, symbols=None, n_symbols: int = 0, universe_as_of=None, start=None, end=None, strict: bool = False
) -> tuple[pd.DataFrame, ValidationReport, list[str]]:
    """Load the experiment's universe: the given ``symbols`` (a list, or ``"all"`` for every symbol in
    the source), or else the ``n_symbols`` most liquid as known on ``universe_as_of``
    (:func:`select_universe`), between ``start`` and ``end``.

    Returns
    -------
    (prices, report, symbols): adjusted tidy prices, the validation report of those rows, and the
    sorted symbol list.

    Raises
    ------
    ValueError
        Neither ``symbols`` nor a positive ``n_symbols`` with ``universe_as_of`` is given.
    """
    if isinstance(symbols, str) and symbols.lower() == "all":
        chosen = sorted(read_prices(source, end=end)["symbol"].unique().astype(str))
    elif symbols:
        if isinstance(symbols, str):
            raise ValueError(f"symbols must be a list of tickers or 'all', got {symbols!r}")
        chosen = sorted(str(s) for s in symbols)
    else:
        if not n_symbols or n_symbols < 1 or universe_as_of is None:
            raise ValueError(f"give symbols, or n_symbols >= 1 with universe_as_of (got n_symbols={n_symbols!r}, universe_as_of={universe_as_of!r})")
        raw = read_prices(source, end=universe_as_of)
        chosen = select_universe(raw, int(n_symbols), universe_as_of)
    prices, report = load_prices(source, chosen, start, end, strict=strict)
    return prices, report, chosen


def universe_summary(prices: pd.DataFrame) -> pd.DataFrame:
    """One row per symbol: ``first_date``, ``last_date``, ``days`` (rows) and
    ``median_dollar_volume`` (raw close x shares, USD), sorted by symbol."""
    close = prices["close_raw"] if "close_raw" in prices.columns else prices["close"]
    frame = prices.assign(dollar_volume=close * prices["volume"])
    grouped = frame.groupby("symbol")
    return pd.DataFrame(
        {
            "first_date": grouped["date"].min().dt.date,
            "last_date": grouped["date"].max().dt.date,
            "days": grouped.size(),
            "median_dollar_volume": grouped["dollar_volume"].median().round(0),
        }
    )
