"""Bar frequencies, exchange calendars and resampling to coarser bars.

* :func:`infer_frequency` reads the bar frequency from the data (daily, weekly, monthly, or an
  intraday bar length such as ``5min`` or ``1h``) and its ``bars_per_year`` (252 for US daily bars;
  for intraday bars 252 times the median number of bars per session); a panel that mixes
  frequencies is refused.
* :func:`exchange_calendar` is the exchange's session calendar from ``exchange_calendars`` (a
  well-kept library of rule-based calendars that needs no network; chosen over
  ``pandas_market_calendars``, which itself depends on it, for the smaller footprint). Its ``XNYS``
  sessions equal the committed store's 5,402 dates exactly.
* :func:`resample_bars` turns bars into coarser ones with the standard OHLCV rules (open first, high
  max, low min, close and adjusted close last, volume and dividends summed, split coefficients
  multiplied), grouped by the exchange calendar: intraday bars by session (regular hours only),
  daily bars by calendar week or month. A coarse bar is labelled with the last session of its period
  (a weekly bar is known only at the close of its last session) and a period not yet complete at the
  end of the data is dropped.

Intraday timestamps are the start of each bar in the exchange's local time (naive), as
:func:`kit.data.read_prices` returns them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..conventions import TRADING_DAYS
from .schema import DataFormatError

__all__ = ["BarFrequency", "infer_frequency", "exchange_calendar", "sessions", "period_labels", "resample_bars",
           "DEFAULT_EXCHANGE", "EXCHANGE_TZ"]

DEFAULT_EXCHANGE = "XNYS"
"""The New York Stock Exchange (``exchange_calendars`` code)."""

EXCHANGE_TZ = "America/New_York"
"""Time zone of :data:`DEFAULT_EXCHANGE`; timezone-aware timestamps are converted to it."""

_COARSE = {"daily": (pd.Timedelta(days=1), TRADING_DAYS), "weekly": (pd.Timedelta(days=7), 52),
           "monthly": (pd.Timedelta(days=30), 12), "quarterly": (pd.Timedelta(days=91), 4)}


@dataclass(frozen=True)
class BarFrequency:
    """A panel's bar frequency: ``name`` (``daily``, ``weekly``, ``monthly``, ``quarterly`` or an
    intraday length such as ``5min``, ``1h``), ``bar`` (its length as a Timedelta), ``intraday``
    (bool) and ``bars_per_year`` (float, the annualisation factor: 252, 52, 12, 4, or 252 times the
    median bars per session)."""

    name: str
    bar: pd.Timedelta
    intraday: bool
    bars_per_year: float


def _label(td: pd.Timedelta) -> str:
    minutes = td.total_seconds() / 60
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    if minutes >= 1 and minutes == int(minutes):
        return f"{int(minutes)}min"
    return f"{int(td.total_seconds())}s"


def _one_symbol(dates: pd.Series) -> BarFrequency | None:
    d = pd.DatetimeIndex(dates.dropna().unique()).sort_values()
    if len(d) < 2:
        return None
    intraday = bool((d != d.normalize()).any())
    if intraday:
        day = d.normalize()
        same_day = day[1:] == day[:-1]
        diffs = (d[1:] - d[:-1])[same_day]
        if len(diffs) == 0:
            return None  # one bar per day stamped at a time of day: read_prices makes these daily
        bar = pd.Timedelta(seconds=float(np.median(diffs.total_seconds()))).round("s")
        per_day = float(pd.Series(day).value_counts().median())
        return BarFrequency(_label(bar), bar, True, per_day * TRADING_DAYS)
    gap = float(np.median((d[1:] - d[:-1]).total_seconds()) / 86_400.0)
    for name, lo, hi in (("daily", 0.5, 4.5), ("weekly", 5.0, 10.0), ("monthly", 25.0, 35.0), ("quarterly", 80.0, 100.0)):
        if lo <= gap <= hi:
            bar, per_year = _COARSE[name]
            return BarFrequency(name, bar, False, float(per_year))
    raise DataFormatError(f"cannot infer a bar frequency: median gap between bars {gap:.1f} days")


def infer_frequency(prices: pd.DataFrame, where: str = "prices") -> BarFrequency:
    """The bar frequency of a tidy frame (``symbol, date``), read from the data.

    Per symbol: timestamps with a time of day are intraday bars whose length is the median gap
    between bars of the same session; otherwise the median gap in days gives daily (up to 4.5 days,
    so weekends and holidays count as one bar), weekly (5-10), monthly (25-35) or quarterly (80-100).
    Symbols with fewer than two bars do not count; a frame without any is taken as daily.

    Returns
    -------
    BarFrequency

    Raises
    ------
    DataFormatError
        Symbols of different frequencies in one panel (names one symbol of each), or a gap that fits
        no frequency.
    """
    found: dict[str, tuple[BarFrequency, str]] = {}
    for sym, dates in prices.groupby("symbol", sort=True)["date"]:
        try:
            freq = _one_symbol(dates)
        except DataFormatError as exc:
            raise DataFormatError(f"{where}: symbol {sym!r}: {exc}") from None
        if freq is not None and freq.name not in found:
            found[freq.name] = (freq, str(sym))
    if len(found) > 1:
        listed = ", ".join(f"{name} (e.g. {sym!r})" for name, (_, sym) in found.items())
        raise DataFormatError(
            f"{where}: bars of different frequencies in one panel: {listed}; load them separately, or "
            "resample the finer ones with kit.data.resample_bars"
        )
    if not found:
        return BarFrequency("daily", pd.Timedelta(days=1), False, float(TRADING_DAYS))
    freq = next(iter(found.values()))[0]
    if freq.intraday:  # bars per year over the whole panel (median bars per session)
        d = pd.DatetimeIndex(prices["date"])
        per_day = float(pd.Series(d.normalize()).groupby([prices["symbol"].to_numpy(), d.normalize()]).size().median())
        freq = BarFrequency(freq.name, freq.bar, True, per_day * TRADING_DAYS)
    return freq


@functools.lru_cache(maxsize=8)
def exchange_calendar(name: str = DEFAULT_EXCHANGE, start: str = "1990-01-01", end: str = "2030-12-31"):
    """The ``exchange_calendars`` calendar ``name`` between ``start`` and ``end`` (cached).

    Raises
    ------
    ValueError
        Unknown exchange code (the library's message lists the valid ones).
    """
    import exchange_calendars as xc

    return xc.get_calendar(name, start=start, end=end)


def sessions(start, end, calendar: str = DEFAULT_EXCHANGE) -> pd.DatetimeIndex:
    """The exchange's sessions (trading days, naive midnight timestamps) from ``start`` to ``end``
    inclusive."""
    cal = exchange_calendar(calendar)
    return pd.DatetimeIndex(cal.sessions_in_range(pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize())).astype("datetime64[ns]")


def period_labels(dates, rule: str, calendar: str = DEFAULT_EXCHANGE) -> pd.Series:
    """For each daily date, the label of its ``weekly`` or ``monthly`` period: the last exchange
    session of that calendar week (Monday to Sunday) or month. A bar with that label is complete at
    the close of its label session.

    Parameters
    ----------
    dates : DatetimeIndex of daily dates.
    rule : ``"weekly"`` or ``"monthly"``.

    Returns
    -------
    Series indexed by ``dates`` of label dates (``datetime64[ns]``).

    Raises
    ------
    ValueError
        Unknown ``rule``.
    """
    d = pd.DatetimeIndex(dates)
    if rule not in ("weekly", "monthly"):
        raise ValueError(f"rule must be 'weekly' or 'monthly', got {rule!r}")
    freq = "W-SUN" if rule == "weekly" else "M"
    pad = pd.Timedelta(days=40)
    sess = sessions(d.min() - pad, d.max() + pad, calendar)
    s_period = sess.to_period(freq)
    last = pd.Series(sess, index=sess).groupby(s_period).max()
    labels = last.reindex(d.to_period(freq)).to_numpy()
    return pd.Series(pd.DatetimeIndex(labels).astype("datetime64[ns]"), index=d)


_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "adjusted_close": "last", "volume": "sum",
        "dividend_amount": "sum", "split_coefficient": "prod"}


def resample_bars(prices: pd.DataFrame, rule: str, calendar: str = DEFAULT_EXCHANGE, drop_incomplete: bool = True) -> pd.DataFrame:
    """Resample a tidy raw panel to coarser bars with the standard OHLCV rules.

    Parameters
    ----------
    prices : tidy frame in the schema (``symbol, date, open, high, low, close, adjusted_close,
        volume``, optionally ``dividend_amount, split_coefficient``), one frequency.
    rule : ``"daily"`` (from intraday bars: one bar per exchange session, regular hours only, bars
        starting before the open or at/after the close are dropped), ``"weekly"`` or ``"monthly"``
        (from daily or intraday bars: calendar weeks or months of exchange sessions), or an
        intraday length such as ``"30min"`` or ``"1h"`` (from finer intraday bars: buckets anchored at
        each session's open).
    calendar : exchange code of :func:`exchange_calendar`.
    drop_incomplete : drop a symbol's last coarse bar when its period ends after the data do (the bar
        is not complete yet).

    Returns
    -------
    Tidy frame in the same columns, sorted by symbol then date; ``date`` is the label of each bar
    (the session date for daily bars, the period's last session for weekly and monthly bars, the
    bucket start for intraday bars). Rows with no valid price in a bucket are dropped.

    Raises
    ------
    ValueError
        Unknown ``rule``, or a ``rule`` not coarser than the data.
    DataFormatError
        Mixed frequencies (from :func:`infer_frequency`).
    """
    freq = infer_frequency(prices)
    frame = prices.copy()
    cols = [c for c in _AGG if c in frame.columns]
    d = pd.DatetimeIndex(frame["date"])
    day = d.normalize()
    if freq.intraday:  # regular hours only: bars starting at or after the open and before the close
        cal = exchange_calendar(calendar)
        opens = pd.DatetimeIndex(cal.opens.reindex(day).dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None))
        closes = pd.DatetimeIndex(cal.closes.reindex(day).dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None))
        keep = np.asarray((d >= opens) & (d < closes), dtype=bool)  # NaT (not a session) compares False
        frame, d, day, opens = frame[keep], d[keep], day[keep], opens[keep]
    if rule in ("daily", "weekly", "monthly"):
        if rule == "daily" and not freq.intraday:
            raise ValueError(f"rule 'daily' needs intraday bars; the data are {freq.name}")
        if freq.name in ("weekly", "monthly", "quarterly"):
            raise ValueError(f"rule {rule!r} is not coarser than the data ({freq.name})")
        if rule == "daily":
            label = pd.Series(day, index=frame.index)
        else:
            lab = period_labels(pd.DatetimeIndex(day.unique()), rule, calendar)
            label = pd.Series(lab.reindex(day).to_numpy(), index=frame.index)
    else:
        try:
            bar = pd.Timedelta(rule)
        except ValueError:
            raise ValueError(f"rule must be 'daily', 'weekly', 'monthly' or a bar length like '1h', got {rule!r}") from None
        if not freq.intraday or bar <= freq.bar:
            raise ValueError(f"rule {rule!r} is not coarser than the data ({freq.name})")
        k = np.asarray((d - opens) // bar, dtype="int64")
        label = pd.Series(opens + pd.to_timedelta(k * bar.value, unit="ns"), index=frame.index)
    agg = {c: _AGG[c] for c in cols}
    grouped = frame.assign(_label=label.to_numpy()).groupby(["symbol", "_label"], sort=True)
    out = grouped.agg(agg).reset_index().rename(columns={"_label": "date"})
    out = out.dropna(subset=["close"])
    if drop_incomplete and rule in ("weekly", "monthly"):
        last_data = frame.groupby("symbol")["date"].max().dt.normalize()
        out = out[out["date"] <= out["symbol"].map(last_data)]
    out["date"] = pd.DatetimeIndex(out["date"]).astype("datetime64[ns]")
    return out[["symbol", "date", *cols]].sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
