"""Brokers and daily bar sources for the paper-trading loop: one interface, an Alpaca paper adapter.

The paper loop (:mod:`kit.paper`) talks to a :class:`Broker` and reads daily bars from a
:class:`BarSource`; it never sees which one it has. Implementations:

* :class:`AlpacaBroker`: Alpaca's *paper* trading API through alpaca-py (``TradingClient``);
* ``SimBroker`` (in :mod:`kit.paper`): a simulated broker with its state in a SQLAlchemy database;
* :class:`AlpacaBarSource`: Alpaca market data (``StockHistoricalDataClient``, IEX feed by default);
* :class:`ParquetBarSource`: the committed Parquet store through :func:`kit.data.read_prices`.

Units: quantities in shares (float, fractional shares allowed), prices in USD per share, cash,
equity, buying power and market values in USD.

Orders are described by side and a positive quantity (``OrderRequest(symbol, side, qty, ...)``),
as Alpaca and most brokers do; :meth:`OrderRequest.from_delta` builds one from a signed change of
position. Order statuses use one fixed vocabulary, :data:`ORDER_STATUSES`:

``new``               created by the kit, not yet sent (SimBroker only; a broker never returns it);
``submitted``         accepted by the broker and working, nothing filled yet;
``partially_filled``  working, part filled (``filled_qty > 0``);
``filled``            done, fully filled;
``rejected``          refused by the broker, at submission (HTTP 403/422) or after acceptance;
``cancelled``         done without a (full) fill: cancelled, expired at the end of the day, replaced.

The original broker status is kept in :attr:`Order.broker_status`.

Idempotence and no double orders. Every order carries a client order id chosen by the caller
(:func:`client_order_id` makes a deterministic one from the run date, symbol, side and model
version). :meth:`Broker.submit` first looks the id up and returns the existing order if there is one,
so a second run of the same day places nothing. :class:`AlpacaBroker` never resubmits blindly: after
a failed or ambiguous submit (timeout, dropped connection, HTTP 429/5xx) it waits, looks the order up
by its client order id, and only resubmits when the broker has no such order. Alpaca itself refuses
a second order with the same client order id (HTTP 422 "client_order_id must be unique"), which the
adapter answers with the existing order.

Rejections are returned, not raised: :meth:`Broker.submit` returns an :class:`Order` with status
``rejected`` and the broker's reason in :attr:`Order.reject_reason` (an order Alpaca refuses at
submission has ``id=None``, since Alpaca never stored it). The paper loop thus handles a rejection
at submission and one reported later by :meth:`Broker.order_status` the same way.

Errors (all subclasses of :class:`BrokerError`): :class:`BrokerConfigError` (keys missing or refused,
live trading asked for), :class:`BrokerUnavailableError` (network down, timeouts or rate limits
after the bounded retries), :class:`DataSourceUnavailableError` (the same for market data),
:class:`OrderNotFoundError`. Bad arguments raise ``ValueError`` naming the field and value.

Credentials come from environment variables only (``APCA_API_KEY_ID``, ``APCA_API_SECRET_KEY`` by
default). They are never printed, logged, put in an exception message or kept by a kit object in
readable form (alpaca-py's client holds them); exceptions raised here carry no chained alpaca-py or
requests exception (those hold the request with its key headers).

Retry behaviour. alpaca-py 0.44.0 (``alpaca/common/rest.py``) retries HTTP 429 and 504 itself, 3
times with a fixed 3 s wait, for every method including order submission; its ``TradingClient``
does not expose these settings (``RESTClient`` takes ``retry_attempts``, ``retry_wait_seconds``,
``retry_exception_codes`` but the trading and data clients do not pass them on, and no ``APCA_RETRY_*``
environment variable is read: those belonged to the older alpaca-trade-api). It sets no timeout
(a ``requests`` call without one can hang forever) and does not retry timeouts or dropped
connections. The adapters here therefore switch alpaca-py's own retry off and set a per-request
timeout on its ``requests`` session (both are private attributes of alpaca-py's clients, checked at
construction; alpaca-py is pinned), and retry in one place: HTTP 429, 500, 502, 503, 504, timeouts
and connection errors, at most ``max_retries`` times, sleeping ``backoff * 2**(k-1)`` seconds
(capped at ``backoff_max``) before retry ``k``. Reads and cancels are retried as they are; a submit
is retried only through the look-up described above.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import json
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import pandas as pd

from kit.data import REQUIRED_COLUMNS, read_prices

__all__ = [
    "ORDER_STATUSES",
    "OPEN_ORDER_STATUSES",
    "FINAL_ORDER_STATUSES",
    "BAR_COLUMNS",
    "BrokerError",
    "BrokerConfigError",
    "BrokerUnavailableError",
    "DataSourceUnavailableError",
    "OrderNotFoundError",
    "OrderRequest",
    "Order",
    "Position",
    "Account",
    "Broker",
    "BarSource",
    "client_order_id",
    "AlpacaBroker",
    "AlpacaBarSource",
    "ParquetBarSource",
]

logger = logging.getLogger(__name__)

ORDER_STATUSES = ("new", "submitted", "partially_filled", "filled", "rejected", "cancelled")
OPEN_ORDER_STATUSES = ("new", "submitted", "partially_filled")
FINAL_ORDER_STATUSES = ("filled", "rejected", "cancelled")
ORDER_SIDES = ("buy", "sell")
TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
BAR_COLUMNS = REQUIRED_COLUMNS
"""Columns of a bar frame: ``symbol, date, open, high, low, close, adjusted_close, volume``."""

DEFAULT_KEY_ENV = "APCA_API_KEY_ID"
DEFAULT_SECRET_ENV = "APCA_API_SECRET_KEY"
PAPER_URL = "https://paper-api.alpaca.markets"
DATA_URL = "https://data.alpaca.markets"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_NY = "America/New_York"

_sleep = time.sleep  # the retry loop's sleep; tests replace it to record the backoff without waiting


# ============================================================================ errors
class BrokerError(RuntimeError):
    """Base class of the errors raised by brokers and bar sources."""


class BrokerConfigError(BrokerError):
    """Credentials missing or refused, or a configuration the kit will not run (live trading).

    The message names the environment variables, never their values.
    """


class BrokerUnavailableError(BrokerError):
    """The service could not be reached or kept failing: offline, timeouts, HTTP 429/5xx after the
    bounded retries. The message says what was tried (attempts, timeout, backoff) and the last error.

    Attributes
    ----------
    attempts : int
        Requests made for the failed operation.
    last_error : str
        The last failure, one line (no credentials).
    """

    def __init__(self, message: str, attempts: int = 0, last_error: str = ""):
        super().__init__(message)
        self.attempts, self.last_error = attempts, last_error


class DataSourceUnavailableError(BrokerUnavailableError):
    """Market data could not be fetched (offline, timeouts, rate limits after the retries)."""


class OrderNotFoundError(BrokerError, LookupError):
    """The broker has no order with the given id."""


# ============================================================================ records
@dataclass(frozen=True)
class OrderRequest:
    """An order to send.

    Attributes
    ----------
    symbol : str
        Ticker, e.g. ``"AAPL"``.
    side : {"buy", "sell"}
        Direction. A sell beyond the position opens a short (where the account allows it).
    qty : float
        Shares, ``> 0`` and finite; fractional shares allowed for ``day`` market orders.
    client_order_id : str
        The caller's id for this order, 1 to 128 characters, unique per account for ever (Alpaca
        refuses a reused id). Use :func:`client_order_id` for a deterministic one.
    type : {"market"}
        Only market orders are supported.
    time_in_force : str
        ``"day"`` (default), ``"gtc"``, ``"opg"``, ``"cls"``, ``"ioc"`` or ``"fok"``.

    Raises
    ------
    ValueError
        A field is out of its domain (the message names the field and the value).
    """

    symbol: str
    side: str
    qty: float
    client_order_id: str
    type: str = "market"
    time_in_force: str = "day"

    def __post_init__(self):
        if not isinstance(self.symbol, str) or not self.symbol.strip() or self.symbol != self.symbol.strip():
            raise ValueError(f"symbol must be a non-empty ticker without spaces, got {self.symbol!r}")
        if self.side not in ORDER_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        try:
            qty = float(self.qty)
        except (TypeError, ValueError):
            raise ValueError(f"qty must be a positive number of shares, got {self.qty!r}") from None
        if not (math.isfinite(qty) and qty > 0):
            raise ValueError(f"qty must be a positive finite number of shares, got {self.qty!r}")
        object.__setattr__(self, "qty", qty)
        if not isinstance(self.client_order_id, str) or not 1 <= len(self.client_order_id) <= 128:
            raise ValueError(f"client_order_id must be a string of 1 to 128 characters, got {self.client_order_id!r}")
        if self.type != "market":
            raise ValueError(f"type must be 'market' (the only order type supported), got {self.type!r}")
        if self.time_in_force not in TIME_IN_FORCE:
            raise ValueError(f"time_in_force must be one of {TIME_IN_FORCE}, got {self.time_in_force!r}")

    @classmethod
    def from_delta(cls, symbol: str, delta: float, client_order_id: str, **kw) -> OrderRequest:
        """The order that changes a position by ``delta`` shares (signed: > 0 buys, < 0 sells).

        Raises
        ------
        ValueError
            ``delta`` is zero or not finite.
        """
        delta = float(delta)
        if not math.isfinite(delta) or delta == 0:
            raise ValueError(f"delta must be a non-zero finite number of shares, got {delta!r}")
        return cls(symbol, "buy" if delta > 0 else "sell", abs(delta), client_order_id, **kw)

    @property
    def signed_qty(self) -> float:
        """``qty`` for a buy, ``-qty`` for a sell (shares)."""
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True)
class Order:
    """An order as the broker knows it.

    Attributes
    ----------
    id : str or None
        The broker's id (Alpaca: a UUID); None for an order refused at submission, which the broker
        never stored.
    client_order_id : str
        The caller's id (see :class:`OrderRequest`).
    symbol : str
    side : {"buy", "sell"}
    qty : float
        Ordered shares (> 0).
    status : str
        One of :data:`ORDER_STATUSES`.
    filled_qty : float
        Shares filled so far (>= 0).
    filled_avg_price : float or None
        Average fill price, USD per share; None before any fill.
    reject_reason : str or None
        Why the broker refused the order (status ``rejected`` only).
    submitted_at, filled_at : datetime or None
        UTC, timezone-aware.
    broker_status : str or None
        The broker's own status word (Alpaca: ``accepted``, ``expired``, ...).
    """

    id: str | None
    client_order_id: str
    symbol: str
    side: str
    qty: float
    status: str
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    reject_reason: str | None = None
    submitted_at: dt.datetime | None = None
    filled_at: dt.datetime | None = None
    broker_status: str | None = None

    def __post_init__(self):
        if self.status not in ORDER_STATUSES:
            raise ValueError(f"status must be one of {ORDER_STATUSES}, got {self.status!r}")
        if self.side not in ORDER_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")

    @property
    def is_open(self) -> bool:
        """True while the order can still fill (``new``, ``submitted``, ``partially_filled``)."""
        return self.status in OPEN_ORDER_STATUSES

    @property
    def signed_filled_qty(self) -> float:
        """Filled shares, negative for a sell."""
        return self.filled_qty if self.side == "buy" else -self.filled_qty


@dataclass(frozen=True)
class Position:
    """A holding.

    Attributes
    ----------
    symbol : str
    qty : float
        Shares, negative for a short.
    avg_entry_price : float
        USD per share.
    market_value : float
        USD, ``qty`` times the last price (negative for a short).
    """

    symbol: str
    qty: float
    avg_entry_price: float
    market_value: float


@dataclass(frozen=True)
class Account:
    """Account balances, all in USD.

    Attributes
    ----------
    cash : float
        Settled and unsettled cash (negative when borrowing on margin).
    equity : float
        Cash plus the market value of all positions.
    buying_power : float
        What new orders may spend, as the broker computes it.
    """

    cash: float
    equity: float
    buying_power: float


def client_order_id(*parts: Any, prefix: str = "kit") -> str:
    """A deterministic client order id: ``prefix-`` and the first 32 hex digits of the sha256 of the
    parts joined by ``|``, e.g. ``client_order_id("2021-04-21", "AAPL", "buy", "dmn-v3")``.

    The same parts always give the same id, so a rerun of a day finds the orders it already placed.

    Raises
    ------
    ValueError
        No parts given.
    """
    if not parts:
        raise ValueError("client_order_id needs at least one part (e.g. run date, symbol, side, model version)")
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:32]}"


# ============================================================================ interfaces
class Broker(abc.ABC):
    """What the paper loop needs from a broker.

    Contract for every implementation:

    * :meth:`submit` is idempotent on ``client_order_id``: when an order with that id exists, it is
      returned and nothing is sent; a refusal is returned as an :class:`Order` with status
      ``rejected`` and a ``reject_reason``, not raised;
    * statuses come from :data:`ORDER_STATUSES`; quantities in shares, money in USD;
    * :class:`BrokerUnavailableError` when the broker cannot be reached; after it, the state of an
      order being submitted is unknown until :meth:`get_order_by_client_id` answers.
    """

    @abc.abstractmethod
    def account(self) -> Account:
        """Cash, equity and buying power (USD)."""

    @abc.abstractmethod
    def positions(self) -> dict[str, Position]:
        """Open positions keyed by symbol, in symbol order (flat symbols are absent)."""

    @abc.abstractmethod
    def submit(self, request: OrderRequest) -> Order:
        """Send an order unless one with ``request.client_order_id`` exists (then return that one)."""

    @abc.abstractmethod
    def cancel(self, order_id: str) -> Order:
        """Ask to cancel an open order; returns the order as it stands afterwards (a fill that came
        first stays a fill). Raises :class:`OrderNotFoundError` for an unknown id."""

    @abc.abstractmethod
    def order_status(self, order_id: str) -> Order:
        """The order with the broker's id ``order_id``; :class:`OrderNotFoundError` if unknown."""

    @abc.abstractmethod
    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order with this client order id, or None if the broker has none."""

    @abc.abstractmethod
    def open_orders(self) -> list[Order]:
        """Orders that can still fill (statuses in :data:`OPEN_ORDER_STATUSES`)."""


@runtime_checkable
class BarSource(Protocol):
    """A source of daily bars: ``bars(symbols, start, end)`` returns a tidy frame with columns
    :data:`BAR_COLUMNS` (raw OHLC and ``adjusted_close`` in USD per share, ``volume`` in shares as
    float64, ``date`` as ``datetime64[ns]`` trading days), sorted by symbol then date, dates inclusive.
    """

    def bars(self, symbols: Iterable[str], start=None, end=None) -> pd.DataFrame: ...


# ============================================================================ Alpaca plumbing
class _Failure(NamedTuple):
    """A failed request, reduced to plain strings (no exception object, so no request headers)."""

    kind: str  # transient | auth | not_found | refused | bad_response | config
    status: int | None
    message: str


def _import_alpaca() -> None:
    """Import alpaca-py's clients once, silencing the DeprecationWarning its stream modules trigger
    in websockets (``websockets.legacy``); the kit uses no websocket."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="websockets.legacy is deprecated", category=DeprecationWarning)
        import alpaca.data.historical.stock  # noqa: F401
        import alpaca.trading.client  # noqa: F401


def _read_keys(key_env: str, secret_env: str) -> tuple[str, str]:
    missing = [name for name in (key_env, secret_env) if not os.environ.get(name, "").strip()]
    if missing:
        raise BrokerConfigError(
            f"Alpaca credentials missing: environment variable(s) {', '.join(missing)} not set or empty; "
            f"set both {key_env} and {secret_env} to paper-trading keys (Alpaca dashboard, paper account). "
            "Nothing was sent."
        )
    return os.environ[key_env].strip(), os.environ[secret_env].strip()


def _api_message(text: str) -> str:
    """The ``message`` of an Alpaca error body, else the body itself (one line, at most 300 chars)."""
    try:
        body = json.loads(text)
        if isinstance(body, dict) and body.get("message"):
            text = str(body["message"])
    except (ValueError, TypeError):
        pass
    text = " ".join(str(text).split())
    return text[:300] if text else "(empty body)"


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def _timeout_adapter(timeout: float):
    """A ``requests`` HTTPAdapter that applies ``timeout`` (seconds) to every request sent without
    one (alpaca-py sends none) and never retries by itself."""
    from requests.adapters import HTTPAdapter

    class TimeoutHTTPAdapter(HTTPAdapter):
        def send(self, request, timeout=None, **kwargs):
            return super().send(request, timeout=default if timeout is None else timeout, **kwargs)

    default = timeout
    return TimeoutHTTPAdapter(max_retries=0)


class _AlpacaHTTP:
    """Shared machinery of the Alpaca adapters: credentials, client set-up, bounded retries, errors."""

    _service = "Alpaca API"
    _default_url = PAPER_URL
    _unavailable_error: type[BrokerUnavailableError] = BrokerUnavailableError
    _offline_hint = ""

    def __init__(self, base_url, key_env, secret_env, timeout, max_retries, backoff, backoff_max):
        self.key_env, self.secret_env = str(key_env), str(secret_env)
        self.timeout = _check_positive("timeout", timeout)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.backoff = _check_positive("backoff", backoff, allow_zero=True)
        self.backoff_max = _check_positive("backoff_max", backoff_max, allow_zero=True)
        if base_url is not None and not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = str(base_url).rstrip("/") if base_url is not None else None
        self._client = None
        _import_alpaca()

    def _configure(self, client) -> None:
        """Switch alpaca-py's own retry off and give its session a default timeout."""
        for attr in ("_session", "_retry", "_api_key", "_secret_key"):
            if not hasattr(client, attr):
                raise BrokerConfigError(
                    f"alpaca-py's client has no attribute {attr!r}: kit.brokers is written for alpaca-py 0.44.0"
                )
        client._retry = 0
        adapter = _timeout_adapter(self.timeout)
        client._session.mount("http://", adapter)
        client._session.mount("https://", adapter)
        self._client = client

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        return self.base_url or self._default_url

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.url!r}, key_env={self.key_env!r}, secret_env={self.secret_env!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r}, backoff={self.backoff!r})"
        )

    def __getstate__(self):
        raise TypeError(f"{type(self).__name__} holds credentials and cannot be pickled; build a new one from the environment")

    def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            self._client._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ errors
    def _redact(self, text: str) -> str:
        for secret in (getattr(self._client, "_api_key", None), getattr(self._client, "_secret_key", None)):
            if secret and len(secret) >= 8:  # real keys are 20+ characters; shorter strings would garble text
                text = text.replace(secret, "***")
        return text

    def _classify(self, exc: BaseException) -> _Failure | None:
        """Map an exception from alpaca-py / requests to a :class:`_Failure`; None if not ours."""
        import pydantic
        import requests
        from alpaca.common.exceptions import APIError

        if isinstance(exc, APIError):
            status = exc.status_code
            msg = self._redact(_api_message(str(exc)))
            if status in RETRY_STATUS:
                return _Failure("transient", status, f"HTTP {status}: {msg}")
            if status == 401:
                return _Failure("auth", status, msg)
            if status == 404:
                return _Failure("not_found", status, msg)
            return _Failure("refused", status, msg)
        if isinstance(exc, requests.exceptions.Timeout):
            return _Failure("transient", None, f"timed out after {self.timeout:g} s ({type(exc).__name__})")
        transient = (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            requests.exceptions.JSONDecodeError,
        )
        if isinstance(exc, transient):
            detail = self._redact(" ".join(str(exc).split()))[:300]
            return _Failure("transient", None, f"{type(exc).__name__}: {detail}")
        if isinstance(exc, requests.exceptions.RequestException):
            return _Failure("config", None, f"{type(exc).__name__}: {self._redact(str(exc))[:300]}")
        if isinstance(exc, pydantic.ValidationError):
            return _Failure("bad_response", None, f"response did not parse: {self._redact(str(exc))[:300]}")
        return None

    def _attempt(self, fn: Callable[[], Any]) -> tuple[Any, _Failure | None]:
        try:
            return fn(), None
        except Exception as exc:
            failure = self._classify(exc)
            if failure is None:
                raise
        # Returned outside the except block: the alpaca-py/requests exception (which holds the request
        # and its key headers) is not chained to anything raised later.
        return None, failure

    def _delay(self, retry: int) -> float:
        return min(self.backoff * 2.0 ** (retry - 1), self.backoff_max)

    def _retry_wait(self, what: str, failure: _Failure, retry: int) -> None:
        delay = self._delay(retry)
        logger.warning("%s failed (%s); retry %d of %d in %.3g s", what, failure.message, retry, self.max_retries, delay)
        _sleep(delay)

    def _unavailable(self, what: str, attempts: int, failure: _Failure, extra: str = "") -> BrokerUnavailableError:
        return self._unavailable_error(
            f"{self._service} at {self.url} unavailable (offline, down or rate-limiting): {what} failed "
            f"{attempts} time(s) ({self.max_retries} retries, backoff {self.backoff:g} s doubling up to "
            f"{self.backoff_max:g} s, timeout {self.timeout:g} s per request); last error: {failure.message}{extra}"
            f"{self._offline_hint}",
            attempts=attempts,
            last_error=failure.message,
        )

    def _error(self, what: str, failure: _Failure) -> BrokerError:
        status = f"HTTP {failure.status}: " if failure.status is not None else ""
        if failure.kind == "auth" or (failure.kind == "refused" and failure.status == 403):
            return BrokerConfigError(
                f"{self._service} at {self.url} refused the credentials from ${self.key_env} and "
                f"${self.secret_env} on {what} ({status}{failure.message}); check they are paper-trading keys "
                "with access to this endpoint"
            )
        if failure.kind == "not_found":
            return OrderNotFoundError(f"{what}: not found ({status}{failure.message})")
        if failure.kind == "config":
            return BrokerConfigError(f"{what}: bad request set-up for {self.url} ({failure.message})")
        return BrokerError(f"{what}: {self._service} answered {status}{failure.message}")

    def _call(self, what: str, fn: Callable[[], Any], handle: tuple[str, ...] = ()) -> tuple[Any, _Failure | None]:
        """Run ``fn`` (an idempotent request) with bounded retries on transient failures.

        Returns ``(result, None)``, or ``(None, failure)`` for a failure whose kind is in ``handle``;
        raises :class:`BrokerUnavailableError` (or the subclass) when the retries are used up and the
        mapped :class:`BrokerError` for any other failure.
        """
        retries = 0
        while True:
            result, failure = self._attempt(fn)
            if failure is None:
                return result, None
            if failure.kind in handle:
                return None, failure
            if failure.kind != "transient":
                raise self._error(what, failure)
            if retries >= self.max_retries:
                raise self._unavailable(what, retries + 1, failure)
            retries += 1
            self._retry_wait(what, failure, retries)


def _order_uuid(order_id) -> str:
    try:
        return str(uuid.UUID(str(order_id)))
    except ValueError:
        raise ValueError(f"order_id must be an Alpaca order id (a UUID), got {order_id!r}") from None


_ALPACA_STATUS = {
    "new": "submitted",
    "accepted": "submitted",
    "pending_new": "submitted",
    "accepted_for_bidding": "submitted",
    "pending_review": "submitted",
    "held": "submitted",
    "calculated": "submitted",
    "stopped": "submitted",
    "suspended": "submitted",
    "pending_cancel": "submitted",
    "pending_replace": "submitted",
    "done_for_day": "submitted",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "canceled": "cancelled",
    "expired": "cancelled",
    "replaced": "cancelled",
    "rejected": "rejected",
}


def _enum_value(x) -> str | None:
    return None if x is None else str(getattr(x, "value", x))


def _float_or_none(x) -> float | None:
    return None if x is None or x == "" else float(x)


def _utc(x) -> dt.datetime | None:
    if x is None:
        return None
    return x.astimezone(dt.UTC) if x.tzinfo is not None else x.replace(tzinfo=dt.UTC)


def _order_from_alpaca(o) -> Order:
    raw = _enum_value(o.status) or ""
    filled = float(o.filled_qty or 0.0)
    status = _ALPACA_STATUS.get(raw)
    if status is None:
        logger.warning("unknown Alpaca order status %r for order %s; treated as working", raw, o.id)
        status = "submitted"
    if status == "submitted" and filled > 0:
        status = "partially_filled"
    # Notional orders (never placed by the kit) have no qty: report what filled.
    qty = float(o.qty) if o.qty not in (None, "") else filled
    return Order(
        id=str(o.id),
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        side=_enum_value(o.side),
        qty=qty,
        status=status,
        filled_qty=filled,
        filled_avg_price=_float_or_none(o.filled_avg_price),
        reject_reason="rejected by Alpaca after acceptance (the API gives no reason)" if status == "rejected" else None,
        submitted_at=_utc(o.submitted_at),
        filled_at=_utc(o.filled_at),
        broker_status=raw,
    )


# ============================================================================ AlpacaBroker
class AlpacaBroker(_AlpacaHTTP, Broker):
    """Alpaca paper trading through alpaca-py's ``TradingClient``.

    Parameters
    ----------
    paper : bool
        Must be True: the kit trades paper accounts only (False raises :class:`BrokerConfigError`).
    base_url : str, optional
        Override of the API root (without ``/v2``), e.g. a local fake server in tests. Default
        ``https://paper-api.alpaca.markets``.
    key_env, secret_env : str
        Names of the environment variables holding the key id and the secret key.
    timeout : float
        Seconds per request (connect and each read), > 0.
    max_retries : int
        Retries after the first attempt for a transient failure (HTTP 429/5xx, timeout, connection
        error), >= 0.
    backoff : float
        Seconds before the first retry; doubled for each further retry.
    backoff_max : float
        Cap on one wait, seconds.

    Raises
    ------
    BrokerConfigError
        A key variable is missing or empty (named, never its value), or ``paper`` is False.
    ValueError
        A numeric argument is out of range.

    Notes
    -----
    Nothing is sent at construction. The methods raise :class:`BrokerUnavailableError` when the API
    stays unreachable through the retries, :class:`BrokerConfigError` when it refuses the keys
    (HTTP 401, or 403 outside order submission), and :class:`BrokerError` for other unexpected answers.
    """

    _service = "Alpaca paper trading API"
    _default_url = PAPER_URL

    def __init__(
        self,
        paper: bool = True,
        base_url: str | None = None,
        key_env: str = DEFAULT_KEY_ENV,
        secret_env: str = DEFAULT_SECRET_ENV,
        timeout: float = 10,
        max_retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
    ):
        if paper is not True:
            raise BrokerConfigError(f"paper={paper!r}: kit.brokers trades Alpaca paper accounts only")
        super().__init__(base_url, key_env, secret_env, timeout, max_retries, backoff, backoff_max)
        self.paper = True
        key, secret = _read_keys(self.key_env, self.secret_env)
        from alpaca.trading.client import TradingClient

        self._configure(TradingClient(api_key=key, secret_key=secret, paper=True, url_override=self.base_url))

    def account(self) -> Account:
        """Cash, equity and buying power in USD (``GET /v2/account``)."""
        a, _ = self._call("GET /v2/account", self._client.get_account)
        values = {}
        for name in ("cash", "equity", "buying_power"):
            v = getattr(a, name, None)
            if v in (None, ""):
                raise BrokerError(f"GET /v2/account: the answer has no {name!r}")
            values[name] = float(v)
        return Account(**values)

    def positions(self) -> dict[str, Position]:
        """Open positions keyed by symbol (``GET /v2/positions``); shorts have negative ``qty``."""
        rows, _ = self._call("GET /v2/positions", self._client.get_all_positions)
        out = {}
        for p in sorted(rows, key=lambda p: p.symbol):
            qty = float(p.qty)
            if _enum_value(p.side) == "short" and qty > 0:
                qty = -qty
            mv = float(p.market_value) if p.market_value not in (None, "") else qty * float(p.current_price)
            out[p.symbol] = Position(p.symbol, qty, float(p.avg_entry_price), mv)
        return out

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order with this client order id, or None (``GET /v2/orders:by_client_order_id``)."""
        if not isinstance(client_order_id, str) or not client_order_id:
            raise ValueError(f"client_order_id must be a non-empty string, got {client_order_id!r}")
        o, failure = self._call(
            f"GET /v2/orders:by_client_order_id client_order_id={client_order_id}",
            lambda: self._client.get_order_by_client_id(client_order_id),
            handle=("not_found",),
        )
        return None if failure is not None else _order_from_alpaca(o)

    def order_status(self, order_id: str) -> Order:
        """The order with Alpaca id ``order_id`` (``GET /v2/orders/{id}``).

        Raises
        ------
        OrderNotFoundError
            Alpaca has no such order.
        ValueError
            ``order_id`` is not a UUID.
        """
        oid = _order_uuid(order_id)
        o, _ = self._call(f"GET /v2/orders/{oid}", lambda: self._client.get_order_by_id(oid))
        return _order_from_alpaca(o)

    def open_orders(self) -> list[Order]:
        """Working orders (``GET /v2/orders?status=open``, up to 500, Alpaca's page limit)."""
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        req = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        rows, _ = self._call("GET /v2/orders?status=open", lambda: self._client.get_orders(filter=req))
        if len(rows) >= 500:
            logger.warning("open_orders: 500 open orders returned, Alpaca's page limit; older ones may be missing")
        return [_order_from_alpaca(o) for o in rows]

    def cancel(self, order_id: str) -> Order:
        """Request cancellation (``DELETE /v2/orders/{id}``) and return the order afterwards.

        Alpaca cancels asynchronously: the returned status may still be ``submitted`` (Alpaca's
        ``pending_cancel``); poll :meth:`order_status`. An order that can no longer be cancelled
        (filled, already cancelled: HTTP 422) is returned as it is.

        Raises
        ------
        OrderNotFoundError
            Alpaca has no such order.
        """
        oid = _order_uuid(order_id)
        what = f"DELETE /v2/orders/{oid}"
        _, failure = self._call(what, lambda: self._client.cancel_order_by_id(oid), handle=("refused",))
        if failure is not None:
            if failure.status != 422:
                raise self._error(what, failure)
            logger.info("%s: not cancelable (%s)", what, failure.message)
        return self.order_status(oid)

    def submit(self, request: OrderRequest) -> Order:
        """Place a market order, at most once per ``request.client_order_id``.

        Steps: look the client order id up (return the order if it exists); ``POST /v2/orders`` once;
        on a transient failure (timeout, dropped connection, HTTP 429/5xx: the order may or may not
        have been placed) wait with backoff, look the id up again, and resubmit only if Alpaca has no
        such order, at most ``max_retries`` times. HTTP 422 "client_order_id must be unique" (a
        concurrent or earlier submit got through) returns the existing order.

        Returns
        -------
        Order
            The placed (or existing) order; status ``rejected`` with ``reject_reason`` and ``id=None``
            when Alpaca refuses it (HTTP 403 e.g. insufficient buying power, HTTP 400/422 e.g. an
            unknown symbol).

        Raises
        ------
        BrokerUnavailableError
            The API stayed unreachable; the message says whether the order was found absent (safe to
            retry later with the same client order id) or its state is unknown.
        BrokerConfigError
            Credentials refused (HTTP 401).
        BrokerError
            ``client_order_id`` already names an order for another symbol or side.
        """
        if not isinstance(request, OrderRequest):
            raise ValueError(f"request must be an OrderRequest, got {type(request).__name__}")
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        coid = request.client_order_id
        existing = self.get_order_by_client_id(coid)
        if existing is not None:
            return self._same_order(existing, request)
        alpaca_req = MarketOrderRequest(
            symbol=request.symbol,
            qty=request.qty,
            side=OrderSide(request.side),
            time_in_force=TimeInForce(request.time_in_force),
            client_order_id=coid,
        )
        what = f"POST /v2/orders ({request.side} {request.qty:g} {request.symbol}, client_order_id={coid})"
        retries = 0
        while True:
            o, failure = self._attempt(lambda: self._client.submit_order(alpaca_req))
            if failure is None:
                order = _order_from_alpaca(o)
                logger.info("submitted %s -> order %s status %s", what, order.id, order.status)
                return order
            if failure.kind == "refused" and failure.status == 422 and "client_order_id" in failure.message.lower():
                found = self.get_order_by_client_id(coid)
                if found is None:
                    raise BrokerError(f"{what}: Alpaca says the client_order_id is taken but has no order with it ({failure.message})")
                return self._same_order(found, request)
            if failure.kind == "refused":
                reason = f"HTTP {failure.status}: {failure.message}"
                logger.warning("%s rejected: %s", what, reason)
                return Order(
                    id=None,
                    client_order_id=coid,
                    symbol=request.symbol,
                    side=request.side,
                    qty=request.qty,
                    status="rejected",
                    reject_reason=reason,
                    submitted_at=dt.datetime.now(dt.UTC),
                    broker_status=None,
                )
            if failure.kind == "not_found":
                raise BrokerConfigError(f"{what}: HTTP 404 ({failure.message}); is {self.url} an Alpaca trading API root?")
            if failure.kind != "transient":
                raise self._error(what, failure)
            # The order may or may not exist: never resubmit before asking for it by client order id.
            retries += 1
            delay = self._delay(retries)
            logger.warning("%s failed (%s); looking it up by client_order_id in %.3g s", what, failure.message, delay)
            _sleep(delay)
            try:
                found = self.get_order_by_client_id(coid)
            except BrokerUnavailableError as exc:
                raise self._unavailable(
                    what,
                    retries,
                    failure,
                    extra=f"; the look-up by client_order_id failed too ({exc.last_error}), so whether the "
                    "order was placed is unknown: reconcile with get_order_by_client_id before resubmitting",
                ) from None
            if found is not None:
                logger.info("%s: found by client_order_id after a failed submit (%s)", what, failure.message)
                return self._same_order(found, request)
            if retries > self.max_retries:
                raise self._unavailable(
                    what,
                    retries,
                    failure,
                    extra="; Alpaca has no order with this client_order_id, so nothing was placed "
                    "(safe to submit again later with the same id)",
                )

    def _same_order(self, order: Order, request: OrderRequest) -> Order:
        if (order.symbol, order.side) != (request.symbol, request.side):
            raise BrokerError(
                f"client_order_id={request.client_order_id!r} already names order {order.id} "
                f"({order.side} {order.symbol}), not the requested {request.side} {request.symbol}"
            )
        if order.qty != request.qty:
            logger.warning(
                "client_order_id=%s exists with qty %g; the request's qty %g is not sent again",
                request.client_order_id,
                order.qty,
                request.qty,
            )
        return order


# ============================================================================ bar sources
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
