"""Daily bar sources: one protocol, the Parquet store and Alpaca market data.

The paper loop reads daily bars from a :class:`BarSource` and never sees which one it has:
:class:`ParquetBarSource` (the committed store, offline) or :class:`AlpacaBarSource` (Alpaca market
data through alpaca-py's ``StockHistoricalDataClient``, IEX feed by default). Units: prices in USD per
share, volume in shares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import pandas as pd

from .alpaca_http import (
    DATA_URL,
    DEFAULT_KEY_ENV,
    DEFAULT_SECRET_ENV,
    BrokerError,
    DataSourceUnavailableError,
    _AlpacaHTTP,
    _read_keys,
)
from .load import read_prices
from .schema import REQUIRED_COLUMNS

BAR_COLUMNS = REQUIRED_COLUMNS



_NY = "America/New_York"



@runtime_checkable
class BarSource(Protocol):
    """A source of daily bars: ``bars(symbols, start, end)`` returns a tidy frame with columns
    :data:`BAR_COLUMNS` (raw OHLC and ``adjusted_close`` in USD per share, ``volume`` in shares as
    float64, ``date`` as ``datetime64[ns]`` trading days), sorted by symbol then date, dates inclusive.
    """

    def bars(self, symbols: Iterable[str], start=None, end=None) -> pd.DataFrame: ...



def _symbol_list(symbols) -> list[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    out = []
    for s in symbols:
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"symbols must be non-empty strings, got {s!r}")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError("symbols is empty")
    return out



def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS})
    frame["symbol"] = frame["symbol"].astype(str)
    frame["date"] = pd.Series(dtype="datetime64[ns]")
    return frame[list(BAR_COLUMNS)]



class ParquetBarSource:
    """Daily bars from the committed Parquet store (or any source :func:`kit.data.read_prices` reads).

    Parameters
    ----------
    source : path-like, optional
        Default: :func:`kit.data.default_store`.

    Works offline. ``bars(symbols, start=None, end=None)`` returns :data:`BAR_COLUMNS` sorted by
    symbol then date; unknown symbols raise :class:`kit.data.DataFormatError`.
    """

    def __init__(self, source=None):
        self.source = source

    def __repr__(self) -> str:
        return f"ParquetBarSource(source={str(self.source) if self.source is not None else None!r})"

    def bars(self, symbols: Iterable[str], start=None, end=None) -> pd.DataFrame:
        """Raw OHLC, ``adjusted_close`` (USD per share) and volume (shares) for ``symbols`` between
        ``start`` and ``end`` inclusive. Raises ``DataFormatError`` (missing file, unknown symbol)."""
        frame = read_prices(self.source, symbols=_symbol_list(symbols), start=start, end=end)
        return frame[list(BAR_COLUMNS)].sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)



class AlpacaBarSource(_AlpacaHTTP):
    """Daily bars from Alpaca market data (alpaca-py's ``StockHistoricalDataClient``), in the same
    schema as :class:`ParquetBarSource`.

    Each call makes two requests per chunk of symbols (``GET /v2/stocks/bars``, timeframe ``1Day``):
    ``adjustment=raw`` gives open/high/low/close/volume and ``adjustment=all`` (splits and dividends)
    gives ``adjusted_close``. Alpaca stamps a daily bar at midnight New York time; ``date`` is that
    New York date.

    Parameters
    ----------
    feed : str
        ``"iex"`` (default, free: IEX prices and IEX-only volume, much smaller than consolidated
        volume) or ``"sip"`` (consolidated, needs a subscription), or another alpaca-py ``DataFeed``.
    base_url : str, optional
        API root without ``/v2``; default ``https://data.alpaca.markets``.
    key_env, secret_env, timeout, max_retries, backoff, backoff_max
        As for :class:`AlpacaBroker`.
    symbols_per_request : int
        Symbols per request (long symbol lists are split).

    Raises
    ------
    BrokerConfigError
        A key variable is missing or empty (named, never its value).

    Notes
    -----
    Alpaca bars carry no dividend or split columns, so the frame has :data:`BAR_COLUMNS` only (as
    :class:`ParquetBarSource`); :func:`kit.data.adjust_prices` works on it. Symbols without bars in
    the range are absent (Alpaca does not tell an unknown symbol from one without data).
    ``bars`` raises :class:`DataSourceUnavailableError` when market data cannot be fetched (offline,
    timeouts, rate limits after the retries): the committed store (:class:`ParquetBarSource`) keeps
    working offline.
    """

    _service = "Alpaca market data API"
    _default_url = DATA_URL
    _unavailable_error = DataSourceUnavailableError
    _offline_hint = "; offline, read the committed Parquet store instead (ParquetBarSource)"

    def __init__(
        self,
        feed: str = "iex",
        base_url: str | None = None,
        key_env: str = DEFAULT_KEY_ENV,
        secret_env: str = DEFAULT_SECRET_ENV,
        timeout: float = 10,
        max_retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        symbols_per_request: int = 100,
    ):
        from alpaca.data.enums import DataFeed

        try:
            self.feed = DataFeed(feed).value
        except ValueError:
            raise ValueError(f"feed must be one of {[f.value for f in DataFeed]}, got {feed!r}") from None
        if not isinstance(symbols_per_request, int) or symbols_per_request < 1:
            raise ValueError(f"symbols_per_request must be an integer >= 1, got {symbols_per_request!r}")
        self.symbols_per_request = symbols_per_request
        super().__init__(base_url, key_env, secret_env, timeout, max_retries, backoff, backoff_max)
        key, secret = _read_keys(self.key_env, self.secret_env)
        from alpaca.data.historical.stock import StockHistoricalDataClient

        self._configure(
            StockHistoricalDataClient(api_key=key, secret_key=secret, raw_data=True, url_override=self.base_url)
        )

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", feed={self.feed!r})"

    def _fetch(self, symbols: list[str], start: dt.datetime, end: dt.datetime, adjustment: str) -> pd.DataFrame:
        from alpaca.data.enums import Adjustment, DataFeed
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        req = StockBarsRequest(
            symbol_or_symbols=symbols,
            timeframe=TimeFrame.Day,
            start=start,
            end=end,
            adjustment=Adjustment(adjustment),
            feed=DataFeed(self.feed),
        )
        raw, _ = self._call(
            f"GET /v2/stocks/bars ({len(symbols)} symbols, adjustment={adjustment}, feed={self.feed})",
            lambda: self._client.get_stock_bars(req),
        )
        rows = [(sym, b["t"], b["o"], b["h"], b["l"], b["c"], b["v"]) for sym, bars in (raw or {}).items() for b in bars]
        return pd.DataFrame(rows, columns=["symbol", "t", "open", "high", "low", "close", "volume"])

    def bars(self, symbols: Iterable[str], start=None, end=None) -> pd.DataFrame:
        """Raw OHLC, ``adjusted_close`` (USD per share) and volume (shares, float64) for ``symbols``
        from ``start`` to ``end`` (New York dates, inclusive; ``end`` defaults to today).

        Returns
        -------
        DataFrame
            Columns :data:`BAR_COLUMNS`, sorted by symbol then date; ``date`` is ``datetime64[ns]``.

        Raises
        ------
        ValueError
            ``start`` missing, ``end`` before ``start``, empty or invalid ``symbols``.
        DataSourceUnavailableError
            Offline, timeouts or rate limits after the retries.
        BrokerConfigError
            Keys refused (HTTP 401/403).
        """
        syms = _symbol_list(symbols)
        if start is None:
            raise ValueError("start is required for Alpaca bars (field 'start')")
        start_d = pd.Timestamp(start).normalize()
        end_d = pd.Timestamp(end).normalize() if end is not None else pd.Timestamp.now(tz=_NY).tz_localize(None).normalize()
        if end_d < start_d:
            raise ValueError(f"end={end!r} is before start={start!r}")
        # Naive datetimes are UTC for alpaca-py; a daily bar is stamped 04:00 or 05:00 UTC of its date.
        req_start = dt.datetime(start_d.year, start_d.month, start_d.day)
        req_end = dt.datetime(end_d.year, end_d.month, end_d.day, 23, 59, 59)
        parts = []
        for i in range(0, len(syms), self.symbols_per_request):
            chunk = syms[i : i + self.symbols_per_request]
            raw = self._fetch(chunk, req_start, req_end, "raw")
            adj = self._fetch(chunk, req_start, req_end, "all")[["symbol", "t", "close"]]
            merged = raw.merge(adj.rename(columns={"close": "adjusted_close"}), on=["symbol", "t"], how="left", validate="one_to_one")
            missing = merged["adjusted_close"].isna()
            if missing.any():
                row = merged[missing].iloc[0]
                raise BrokerError(
                    f"Alpaca bars: no adjusted bar for symbol={row['symbol']!r} t={row['t']!r} "
                    f"({int(missing.sum())} raw bars without an adjusted one)"
                )
            parts.append(merged)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if frame.empty:
            return _empty_bars()
        ts = pd.to_datetime(frame["t"], utc=True).dt.tz_convert(_NY)
        frame["date"] = ts.dt.tz_localize(None).dt.normalize().astype("datetime64[ns]")
        frame = frame[(frame["date"] >= start_d) & (frame["date"] <= end_d)]
        frame["symbol"] = frame["symbol"].astype(str)
        for col in ("open", "high", "low", "close", "adjusted_close", "volume"):
            frame[col] = frame[col].astype("float64")
        frame = frame[list(BAR_COLUMNS)].sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
        return frame if not frame.empty else _empty_bars()

