"""The price schema shared by the store and a user's files, and the data layer's errors.

Columns (one row per symbol and bar)::

    symbol (str), date (date, or a timestamp for intraday bars), open, high, low, close,
    adjusted_close (float64, USD per share), volume (int64 or float64, shares),
    dividend_amount (float64, USD per share, optional, default 0.0),
    split_coefficient (float64, new shares per old share, optional, default 1.0)

Column names are matched case-insensitively and ignoring surrounding spaces (``Close``, ``CLOSE ``
and ``close`` are the same column); two columns that differ only in case are refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adjusted_close", "volume")

OPTIONAL_COLUMNS = {"dividend_amount": 0.0, "split_coefficient": 1.0}

PRICE_FIELDS = ("open", "high", "low", "close", "adjusted_close")

SEVERITIES = ("error", "warning", "info")
"""Severities of validation findings: ``error`` (the row is wrong), ``warning`` (unusual but possibly
real), ``info`` (worth knowing, harmless for returns)."""


class DataFormatError(ValueError):
    """A file cannot be read as price data: a missing column, unparseable dates, a missing file.

    The message names the file and, where known, the row, column and value, with a hint.
    """


class DataValidationError(ValueError):
    """A price record failed a validation check (raised in strict mode).

    Attributes ``check``, ``symbol``, ``date``, ``field``, ``value`` and ``severity`` name the first
    failing record; the message lists them and how many further issues were found.
    """

    def __init__(self, check: str, symbol: str, date, field: str, value, n_issues: int = 1, severity: str = "error"):
        self.check, self.symbol, self.date, self.field, self.value = check, symbol, date, field, value
        self.n_issues, self.severity = n_issues, severity
        value = value.item() if isinstance(value, np.generic) else value
        when = pd.Timestamp(date).date() if date is not None and not pd.isna(date) else date
        msg = f"{check} ({severity}): symbol={symbol!r} date={when} field={field!r} value={value!r}"
        if n_issues > 1:
            msg += f" (and {n_issues - 1} more issues; run validate_prices for the full report)"
        super().__init__(msg)


def canonical_columns(columns, where: str, required=REQUIRED_COLUMNS) -> dict:
    """Map a file's column names to the schema's, case-insensitively.

    Returns
    -------
    dict original name -> schema name, for the columns that match a schema column (others are
    ignored).

    Raises
    ------
    DataFormatError
        Two columns map to the same schema name, or a required column is missing (the message
        lists the columns found and says that names are matched case-insensitively).
    """
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    mapping, seen = {}, {}
    for col in columns:
        key = str(col).strip().lower()
        if key in known:
            if key in seen:
                raise DataFormatError(
                    f"{where}: columns {seen[key]!r} and {col!r} are the same column {key!r} "
                    "(names are matched case-insensitively); keep one"
                )
            seen[key] = col
            mapping[col] = key
    missing = [c for c in required if c not in seen]
    if missing:
        found = ", ".join(str(c) for c in columns) or "(none)"
        raise DataFormatError(
            f"{where}: missing required column(s) {missing}; columns found: {found}; expected "
            f"{list(required)} (names are matched case-insensitively)"
        )
    return mapping


def _row_label(i: int, line_offset: int | None) -> str:
    return f"row {i}" + (f" (line {i + line_offset})" if line_offset is not None else "")


def symbols_as_text(values: pd.Series, where: str, line_offset: int | None = None) -> pd.Series:
    """Symbols as strings, never merged: a missing or empty symbol raises, and so does a non-string
    value whose text equals another row's string symbol (e.g. 1 and "1")."""
    values = values.reset_index(drop=True)
    missing = values.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataFormatError(f"{where}: column 'symbol' {_row_label(i, line_offset)} is missing")
    if pd.api.types.is_object_dtype(values) and not pd.api.types.is_string_dtype(values):
        uniq = pd.unique(values)
        kinds = {type(x) for x in uniq}
        is_str = values.map(lambda x: isinstance(x, str)).to_numpy(dtype=bool) if kinds - {str} else np.ones(len(values), bool)
        text = values.astype(str)
        if not is_str.all():
            clash = set(text[~is_str]) & set(text[is_str])
            if clash:
                raise DataFormatError(
                    f"{where}: column 'symbol' holds {sorted(clash)[0]!r} both as text and as a number; "
                    "symbols are read as text, so these would merge: make them one type"
                )
    else:
        text = values.astype(str)
    text = text.str.strip()
    empty = (text == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataFormatError(f"{where}: column 'symbol' {_row_label(i, line_offset)} is empty")
    return text.astype(str)


def _check_columns(columns, where: str) -> None:
    canonical_columns(columns, where)
