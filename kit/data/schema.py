"""The price schema shared by the store and a user's files, and the data layer's errors.

Columns (one row per symbol and date)::

    symbol (str), date (date), open, high, low, close, adjusted_close (float64, USD per share),
    volume (int64 or float64, shares), dividend_amount (float64, USD per share, optional,
    default 0.0), split_coefficient (float64, new shares per old share, optional, default 1.0)
"""

from __future__ import annotations

import pandas as pd

REQUIRED_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adjusted_close", "volume")



OPTIONAL_COLUMNS = {"dividend_amount": 0.0, "split_coefficient": 1.0}



PRICE_FIELDS = ("open", "high", "low", "close", "adjusted_close")



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



def _check_columns(columns, where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataFormatError(
            f"{where}: missing required column(s) {missing}; expected {list(REQUIRED_COLUMNS)}"
        )

