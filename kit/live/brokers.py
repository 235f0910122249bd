"""The broker interface of the paper-trading loop and its order vocabulary.

The daily step (:mod:`kit.live.daily`) talks to a :class:`Broker` and never sees which one it has:
:class:`kit.live.sim.SimBroker` (a simulated broker with its state in the kit's database) or
:class:`kit.live.alpaca.AlpacaBroker` (Alpaca's *paper* trading API through alpaca-py).

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

"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Any

from ..data.alpaca_http import (
    BrokerConfigError,
    BrokerError,
    BrokerUnavailableError,
    DataSourceUnavailableError,
    OrderNotFoundError,
)

ORDER_STATUSES = ("new", "submitted", "partially_filled", "filled", "rejected", "cancelled")



OPEN_ORDER_STATUSES = ("new", "submitted", "partially_filled")



FINAL_ORDER_STATUSES = ("filled", "rejected", "cancelled")



ORDER_SIDES = ("buy", "sell")



TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")




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

    def start_day(self, as_of, open_prices, close_prices) -> list[Order]:
        """The broker's start of the trading day ``as_of``, before the day's decisions: a simulated
        broker fills earlier orders at ``open_prices`` and marks ``close_prices`` ((N,) Series of USD
        per share by symbol); a real broker fills on its own and does nothing here. Returns the
        orders that filled or were rejected now (default: none)."""
        return []


__all__ = ["ORDER_STATUSES", "OPEN_ORDER_STATUSES", "FINAL_ORDER_STATUSES", "ORDER_SIDES", "TIME_IN_FORCE", "BrokerError", "BrokerConfigError",
           "BrokerUnavailableError", "DataSourceUnavailableError", "OrderNotFoundError", "OrderRequest", "Order", "Position", "Account",
           "client_order_id", "Broker"]
