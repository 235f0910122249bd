"""Validation of raw prices: every finding with its check, severity, symbol, date, field, value and
reason.

Severities: ``error`` (the row is wrong: a training target or feature built on it would be wrong),
``warning`` (unusual but possibly real: a crash, a halt, a gap), ``info`` (worth knowing, harmless for
adjusted returns). Checks that judge a move look at the adjusted close (what returns and training
use), not the raw close. A move on a day when the whole market moved the same way (the cross-sectional
median adjusted return of the day, over at least :data:`MARKET_MIN_SYMBOLS` symbols, is at least
:data:`MARKET_MOVE` in the same direction) is reported as a ``warning``, not an ``error``.

The store's adjustment convention (AlphaVantage's; it holds on all 473 split rows of the committed
store and on all but one of its 27,715 dividend rows without a split, the exception being a data
error that ``dividend_without_adjustment`` reports): with the factor ``a_t = adjusted_close_t / close_t``, a dividend
``D`` and a split ``s`` (new shares per old) on day t give ``a_{t-1} / a_t = close_t / (close_t + D) / s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schema import PRICE_FIELDS, SEVERITIES, DataValidationError, canonical_columns, symbols_as_text

__all__ = ["ValidationReport", "validate_prices", "CHECKS", "market_moves", "JUMP_THRESHOLD", "MARKET_MOVE"]

JUMP_THRESHOLD = 0.5
"""``large_move``: an adjusted daily return beyond +-50%."""

MARKET_MOVE = 0.03
"""A market-wide move day: the median adjusted return across symbols is at least 3% in size."""

MARKET_MIN_SYMBOLS = 20
"""Symbols needed on a day before its median return can call the day market-wide."""

SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0)
"""Simple split ratios (and their reverses) that ``unrecorded_split`` looks for."""

SPLIT_TOLERANCE = 0.02
"""``unrecorded_split``: the adjusted ratio lies within 2% of ``1/s`` or ``s``."""

ISSUE_COLUMNS = ["check", "severity", "symbol", "date", "field", "value", "reason"]

CHECKS: dict[str, str] = {
    "duplicate_row": "error: a second row for the same (symbol, date); the first is kept",
    "date_order": "warning: a date not after the previous row's date within a symbol (file order; rows are sorted on load)",
    "missing_value": "error: NaN in a price or volume field",
    "non_finite_value": "error: +-inf in a price or volume field",
    "non_positive_price": "error: open/high/low/close/adjusted_close <= 0",
    "ohlc_inconsistent": "error: high below max(open, close, low) or low above min(open, close, high)",
    "non_positive_volume": "error for a negative volume, warning for a zero volume (a halt, or a carried quote)",
    "weekend_date": "error: a daily bar dated on a Saturday or Sunday (e.g. day-first dates read month-first)",
    "missing_day": "warning: a calendar trading day between a symbol's first and last date with no row",
    "large_move": "warning: |adjusted return| > 50% (real crashes look like this too)",
    "stale_quote": "warning: open = high = low = close with zero volume (a quote carried, not a trade)",
    "bad_row": "error: every raw price of day t off by one factor f (|f - 1| > 25%) from the day before and the next day back within 10%",
    "unrecorded_split": "error: the adjusted and raw close move by a simple split ratio (2, 3, 4, 5, 10 or their reverses, within 2%) with no split or dividend recorded",
    "split_without_move": "error when a recorded split leaves an adjusted move over 25% (value: adjusted ratio); info when the raw close did not move by 1/split but the adjusted close is continuous",
    "dividend_without_adjustment": "a dividend D whose factor change a_{t-1}/a_t differs from close_t / (close_t + D) by over 0.5%: warning, error when over 10%",
    "dividend_exceeds_close": "error: a dividend at least the previous close",
    "adjustment_without_event": "the factor a = adjusted_close / close changes with no dividend or split: error when the adjusted return is then over 25% while the raw is not, info otherwise",
    "first_row_inconsistent": "error: a symbol's first row whose factor differs from the next row's so that the first adjusted return is over 25% while the raw is not",
}
"""Every check with its severity and rule (the README's table)."""

MOVE_CHECKS = ("bad_row", "unrecorded_split")
"""Checks downgraded from error to warning on a market-wide move day in the same direction."""


@dataclass
class ValidationReport:
    """Result of :func:`validate_prices`.

    Attributes
    ----------
    issues : DataFrame
        One row per finding: ``check, severity, symbol, date, field, value, reason``.
    n_rows, n_symbols : int
        Size of the validated frame.
    calendar_days : int
        Distinct trading days of the reference calendar used for the missing-day check.
    frequency : str
        The panel's bar frequency (``"daily"``, ``"1h"``, ...; :func:`kit.data.infer_frequency`).
    bars_per_year : float
        Annualisation factor of that frequency (252 for daily bars).
    skipped : tuple of str
        Checks that could not run (e.g. the dividend checks when ``dividend_amount`` is absent).
    """

    issues: pd.DataFrame
    n_rows: int
    n_symbols: int
    calendar_days: int
    frequency: str = "daily"
    bars_per_year: float = 252.0
    skipped: tuple = ()
    checks: tuple[str, ...] = field(default=tuple(CHECKS))

    @property
    def ok(self) -> bool:
        """True when no check found anything."""
        return self.issues.empty

    @property
    def n_errors(self) -> int:
        """Number of findings of severity ``error``."""
        return int((self.issues["severity"] == "error").sum()) if len(self.issues) else 0

    def summary(self) -> pd.DataFrame:
        """Per check (every check listed, zeros included): findings (``issues``), findings per severity
        (``error``, ``warning``, ``info``) and ``symbols`` affected."""
        rows = []
        for check in self.checks:
            sub = self.issues[self.issues["check"] == check]
            row = {"check": check, "issues": len(sub)}
            for sev in SEVERITIES:
                row[sev] = int((sub["severity"] == sev).sum())
            row["symbols"] = sub["symbol"].nunique()
            rows.append(row)
        return pd.DataFrame(rows).set_index("check")

    def counts(self) -> pd.DataFrame:
        """Findings per (check, severity), only the non-zero ones: columns ``check, severity, issues,
        symbols``."""
        if self.issues.empty:
            return pd.DataFrame(columns=["check", "severity", "issues", "symbols"])
        g = self.issues.groupby(["check", "severity"], sort=True)
        return pd.DataFrame({"issues": g.size(), "symbols": g["symbol"].nunique()}).reset_index()

    def raise_if_any(self, min_severity: str = "error") -> None:
        """Raise :class:`DataValidationError` for the first finding at ``min_severity`` or worse."""
        levels = SEVERITIES[: SEVERITIES.index(min_severity) + 1]
        bad = self.issues[self.issues["severity"].isin(levels)]
        if bad.empty:
            return
        first = bad.iloc[0]
        raise DataValidationError(
            first["check"], first["symbol"], first["date"], first["field"], first["value"], len(bad), first["severity"]
        )

    def __repr__(self) -> str:  # pragma: no cover - display only
        return (
            f"ValidationReport(rows={self.n_rows}, symbols={self.n_symbols}, issues={len(self.issues)}, "
            f"errors={self.n_errors}, frequency={self.frequency})\n" + self.summary().to_string()
        )


def _empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in ISSUE_COLUMNS})


def _issues(check, frame, mask, field, values, reason, severity="error") -> pd.DataFrame:
    """Findings for the rows of ``frame`` where ``mask``; ``severity`` and ``reason`` a scalar, an
    array over all rows, or a function of the row position."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    if len(idx) == 0:
        return _empty_issues()
    sub = frame.iloc[idx]

    def pick(x):
        if callable(x):
            return np.asarray([x(i) for i in idx], dtype=object)
        return np.asarray(x)[idx] if isinstance(x, np.ndarray | pd.Series | list) else x

    vals = np.asarray(values, dtype="float64")[idx] if values is not None else [None] * len(idx)
    if not isinstance(values, np.ndarray | pd.Series | type(None)):
        raise TypeError("values must be an array over all rows")
    return pd.DataFrame(
        {
            "check": check,
            "severity": pick(severity),
            "symbol": sub["symbol"].to_numpy(),
            "date": sub["date"].to_numpy(),
            "field": field,
            "value": [float(v) if v is not None else None for v in vals],
            "reason": pick(reason),
        }
    )


def market_moves(prices: pd.DataFrame) -> pd.DataFrame:
    """The market's move per date: the cross-sectional median adjusted return and the number of
    symbols with a return that day.

    Parameters
    ----------
    prices : raw tidy frame (``symbol, date, adjusted_close``), any order.

    Returns
    -------
    DataFrame indexed by date with columns ``median_return`` (float64, simple return) and
    ``n_symbols`` (int).
    """
    f = prices[["symbol", "date", "adjusted_close"]].drop_duplicates(["symbol", "date"]).sort_values(["symbol", "date"], kind="stable")
    prev = f.groupby("symbol", sort=False)["adjusted_close"].shift(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = f["adjusted_close"].to_numpy(dtype="float64") / prev.to_numpy(dtype="float64") - 1.0
    r = pd.Series(np.where(np.isfinite(r), r, np.nan), index=f.index)
    g = r.groupby(f["date"].to_numpy())
    return pd.DataFrame({"median_return": g.median(), "n_symbols": g.count()})


def _normalise(prices: pd.DataFrame) -> tuple[pd.DataFrame, tuple]:
    """Rename columns to the schema (case-insensitive); add absent optional columns as NaN and list
    the checks that then cannot run."""
    mapping = canonical_columns(prices.columns, "validate_prices(prices)")
    frame = prices[list(mapping)].rename(columns=mapping).reset_index(drop=True)
    frame["symbol"] = symbols_as_text(frame["symbol"], "validate_prices(prices)")
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    skipped = []
    if "dividend_amount" not in frame.columns:
        frame["dividend_amount"] = np.nan
        skipped += ["dividend_without_adjustment", "dividend_exceeds_close"]
    if "split_coefficient" not in frame.columns:
        frame["split_coefficient"] = np.nan
        skipped += ["split_without_move"]
    return frame, tuple(skipped)


def validate_prices(
    prices: pd.DataFrame, calendar=None, strict: bool = False, *, market: pd.DataFrame | None = None,
    frequency: str | None = None, bars_per_year: float | None = None,
) -> ValidationReport:
    """Check raw prices and report every finding, each with its severity (:data:`CHECKS` lists the
    checks, their rules and severities).

    Parameters
    ----------
    prices : DataFrame
        Raw (unadjusted) tidy frame as returned by :func:`kit.data.read_prices`, in file order.
        ``dividend_amount`` and ``split_coefficient`` are optional: without them the checks that need
        them are skipped (listed in ``report.skipped``) and the others treat every day as event-free.
    calendar : DatetimeIndex, optional
        Reference trading days for ``missing_day``. Default: the union of dates in ``prices``.
    strict : bool
        Raise :class:`DataValidationError` for the first finding of severity ``error``.
    market : DataFrame, optional
        :func:`market_moves` of a wider panel (e.g. the whole store when ``prices`` is a few symbols
        of it), for the market-wide downgrade; default: computed from ``prices``.
    frequency, bars_per_year : optional
        The bar frequency (:func:`kit.data.infer_frequency`); default inferred. ``weekend_date`` and
        ``missing_day`` run on daily bars only.

    Returns
    -------
    ValidationReport

    Raises
    ------
    DataFormatError
        A required column is missing (names the columns found).
    DataValidationError
        In strict mode, the first ``error`` finding.
    """
    frame, skipped = _normalise(prices)
    if frequency is None or bars_per_year is None:
        from .bars import infer_frequency

        freq = infer_frequency(frame)
        frequency, bars_per_year = freq.name, freq.bars_per_year
    daily = frequency == "daily"
    parts = []
    dup = frame.duplicated(["symbol", "date"], keep="first").to_numpy()
    parts.append(_issues("duplicate_row", frame, dup, "date", None, "second row for (symbol, date); the first is kept"))

    same_symbol = (frame["symbol"] == frame["symbol"].shift(1)).to_numpy()
    not_after = (frame["date"] <= frame["date"].shift(1)).to_numpy() & same_symbol & ~dup
    parts.append(_issues("date_order", frame, not_after, "date", None, "date not after the previous row's (rows are sorted on load)", "warning"))

    for col in (*PRICE_FIELDS, "volume"):
        vals = frame[col].to_numpy(dtype="float64")
        parts.append(_issues("missing_value", frame, np.isnan(vals), col, vals, "missing value"))
        parts.append(_issues("non_finite_value", frame, np.isinf(vals), col, vals, "infinite value"))
    for col in PRICE_FIELDS:
        vals = frame[col].to_numpy(dtype="float64")
        parts.append(_issues("non_positive_price", frame, vals <= 0, col, vals, "price <= 0"))

    o, h, lo, c = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    finite = np.isfinite(np.stack([o, h, lo, c])).all(axis=0)
    with np.errstate(invalid="ignore"):
        tol = 1e-9 * np.nanmax(np.abs(np.where(np.isfinite(np.stack([o, h, lo, c])), np.stack([o, h, lo, c]), 0.0)), axis=0, initial=1.0)
        high_bad = finite & (h < np.maximum.reduce([o, c, lo]) - tol)
        low_bad = finite & (lo > np.minimum.reduce([o, c, h]) + tol)
    parts.append(_issues("ohlc_inconsistent", frame, high_bad, "high", h, "high below max(open, close, low)"))
    parts.append(_issues("ohlc_inconsistent", frame, low_bad, "low", lo, "low above min(open, close, high)"))

    vol = frame["volume"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        parts.append(_issues("non_positive_volume", frame, vol < 0, "volume", vol, "negative volume"))
        parts.append(_issues("non_positive_volume", frame, vol == 0, "volume", vol, "zero volume", "warning"))

    cal = pd.DatetimeIndex(calendar if calendar is not None else frame["date"].unique()).sort_values()
    if daily:
        weekend = (frame["date"].dt.day_of_week >= 5).to_numpy()
        parts.append(_issues("weekend_date", frame, weekend, "date", None, "a daily bar on a Saturday or Sunday (day-first dates read month-first?)"))
        missing_rows = []
        for sym, dates in frame.groupby("symbol", sort=False)["date"]:
            first, last = dates.min(), dates.max()
            expected = cal[(cal >= first) & (cal <= last)]
            missing_rows += [(sym, d) for d in expected.difference(pd.DatetimeIndex(dates.unique()))]
        if missing_rows:
            parts.append(pd.DataFrame({
                "check": "missing_day", "severity": "warning",
                "symbol": [s for s, _ in missing_rows], "date": [d for _, d in missing_rows], "field": "date",
                "value": None, "reason": "trading day inside the symbol's range has no row",
            }))

    ordered = frame[~dup].sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    if market is None:
        market = market_moves(ordered)
    parts.extend(_move_checks(ordered, market, skipped))

    parts = [p for p in parts if not p.empty]
    issues = pd.concat(parts, ignore_index=True) if parts else _empty_issues()
    issues = issues[ISSUE_COLUMNS]
    report = ValidationReport(
        issues=issues, n_rows=len(frame), n_symbols=frame["symbol"].nunique(), calendar_days=len(cal),
        frequency=frequency, bars_per_year=float(bars_per_year), skipped=skipped,
    )
    if strict:
        report.raise_if_any("error")
    return report


def _move_checks(frame: pd.DataFrame, market: pd.DataFrame, skipped: tuple) -> list[pd.DataFrame]:
    """The checks that compare a day with its neighbours (frame sorted by symbol, date; no duplicates)."""
    g = frame.groupby("symbol", sort=False)
    o, h, lo, c = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    adj = frame["adjusted_close"].to_numpy(dtype="float64")
    prev = {k: g[k].shift(1).to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "adjusted_close")}
    nxt_close = g["close"].shift(-1).to_numpy(dtype="float64")
    first_row = (g.cumcount() == 0).to_numpy()
    second_row = (g.cumcount() == 1).to_numpy()
    split_col = frame["split_coefficient"].to_numpy(dtype="float64")
    div_col = frame["dividend_amount"].to_numpy(dtype="float64")
    split = np.where(np.isnan(split_col), 1.0, split_col)
    div = np.where(np.isnan(div_col), 0.0, div_col)
    nxt_split = np.nan_to_num(g["split_coefficient"].shift(-1).to_numpy(dtype="float64"), nan=1.0)
    vol = frame["volume"].to_numpy(dtype="float64")
    no_event = (split == 1.0) & (div == 0.0)
    mk = market.reindex(pd.DatetimeIndex(frame["date"]))
    m_ret = mk["median_return"].to_numpy(dtype="float64")
    m_ok = mk["n_symbols"].fillna(0).to_numpy() >= MARKET_MIN_SYMBOLS
    out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        ra = adj / prev["adjusted_close"]  # adjusted ratio (1 + adjusted return)
        rc = c / prev["close"]
        market_day = m_ok & (np.abs(m_ret) >= MARKET_MOVE)
        same_way = market_day & (np.sign(ra - 1.0) == np.sign(m_ret))

        def m_txt(i):
            return f"; market-wide move that day (median {m_ret[i]:+.1%})" if same_way[i] else ""

        def move_severity(i):
            return "warning" if same_way[i] else "error"

        big = np.abs(ra - 1.0) > JUMP_THRESHOLD
        out.append(_issues("large_move", frame, big, "adjusted_close", ra - 1.0,
                           lambda i: f"adjusted return {ra[i] - 1.0:+.1%}" + m_txt(i), "warning"))

        stale = (o == h) & (h == lo) & (lo == c) & (vol == 0)
        out.append(_issues("stale_quote", frame, stale, "close", c, "open = high = low = close with zero volume", "warning"))

        f = rc
        ratios = np.stack([o / prev["open"], h / prev["high"], lo / prev["low"], f])
        consistent = (np.min(ratios, axis=0) > 0) & ((np.max(ratios, axis=0) / np.min(ratios, axis=0)) < 1.05)  # NaN -> False
        back = np.abs(nxt_close / prev["close"] - 1.0) < 0.10
        bad = (np.abs(f - 1.0) > 0.25) & consistent & back & (split == 1.0) & (nxt_split == 1.0)
        out.append(_issues("bad_row", frame, bad, "close", f,
                           lambda i: "all prices off by one factor from both neighbours" + m_txt(i), move_severity))

        a = adj / c
        a_prev = prev["adjusted_close"] / prev["close"]
        change = a_prev / a  # a_{t-1} / a_t
        factor_same = np.abs(change - 1.0) < 0.01
        near = np.zeros(len(frame), dtype=bool)
        for s in SPLIT_RATIOS:
            near |= (np.abs(ra * s - 1.0) < SPLIT_TOLERANCE) | (np.abs(ra / s - 1.0) < SPLIT_TOLERANCE)
        unrec = near & no_event & factor_same & ~bad
        out.append(_issues("unrecorded_split", frame, unrec, "adjusted_close", ra,
                           lambda i: f"adjusted and raw close moved by x{ra[i]:.3f}, a simple split ratio, with no split recorded" + m_txt(i),
                           move_severity))

        if "split_without_move" not in skipped:
            is_split = split != 1.0
            broken = is_split & (np.abs(ra - 1.0) > 0.25)
            out.append(_issues("split_without_move", frame, broken, "split_coefficient", ra,
                               "split recorded but the adjusted close moved by over 25% (value: adjusted ratio)"))
            raw_still = is_split & ~broken & (np.abs(rc * split - 1.0) > 0.25)
            out.append(_issues("split_without_move", frame, raw_still, "split_coefficient", rc * split,
                               "split recorded but the raw close did not move by 1/split; the adjusted close is continuous", "info"))

        if "dividend_without_adjustment" not in skipped:
            expected = c / (c + div) / split
            gap = change / expected - 1.0
            div_bad = (div > 0) & np.isfinite(gap) & (np.abs(gap) > 0.005)
            out.append(_issues("dividend_without_adjustment", frame, div_bad, "dividend_amount", gap,
                               "dividend D without the factor change close_t / (close_t + D) (value: relative gap)",
                               lambda i: "error" if abs(gap[i]) > 0.10 else "warning"))
            exceeds = (div > 0) & (div >= prev["close"])
            out.append(_issues("dividend_exceeds_close", frame, exceeds, "dividend_amount", div,
                               lambda i: f"dividend {div[i]:g} >= previous close {prev['close'][i]:g}"))

        moved = np.abs(change - 1.0) > 1e-6
        adj_wrong = (np.abs(ra - 1.0) > 0.25) & (np.abs(rc - 1.0) <= 0.25)
        no_ev = no_event & moved & np.isfinite(change)
        out.append(_issues("adjustment_without_event", frame, no_ev, "adjusted_close", change - 1.0,
                           lambda i: "adjusted_close / close changed with no dividend or split and the adjusted return is over 25% while the raw is not"
                           if adj_wrong[i] else "adjusted_close / close changed with no dividend or split (an unrecorded dividend?); the adjusted return is plausible",
                           lambda i: "error" if adj_wrong[i] else "info"))

        first_bad = np.zeros(len(frame), dtype=bool)
        vals = np.full(len(frame), np.nan)
        idx2 = np.flatnonzero(second_row & (np.abs(change - 1.0) > 0.005) & adj_wrong)
        first_bad[idx2 - 1] = True
        vals[idx2 - 1] = change[idx2] - 1.0
        first_bad &= first_row
        out.append(_issues("first_row_inconsistent", frame, first_bad, "adjusted_close", vals,
                           "the first row's adjusted_close / close differs from the next row's and makes the first adjusted return over 25% (value: relative factor change)"))
    return out
