"""Validation of raw prices: every finding with its check, symbol, date, field and value."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schema import PRICE_FIELDS, DataValidationError, _check_columns

JUMP_THRESHOLD = 0.5



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

