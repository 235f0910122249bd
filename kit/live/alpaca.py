"""Alpaca's paper trading API behind the :class:`kit.live.brokers.Broker` interface (alpaca-py's
``TradingClient``). Only the paper endpoint is ever used; keys come from the environment and are
never shown (:mod:`kit.data.alpaca_http`). A submit is never repeated blindly: after a failed or
ambiguous attempt the order is looked up by its client order id first."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from ..data import alpaca_http as _http
from ..data.alpaca_http import (
    DEFAULT_KEY_ENV,
    DEFAULT_SECRET_ENV,
    PAPER_URL,
    BrokerConfigError,
    BrokerError,
    BrokerUnavailableError,
    _AlpacaHTTP,
    _read_keys,
)
from .brokers import Account, Broker, Order, OrderRequest, Position

logger = logging.getLogger(__name__)



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

    name = "alpaca"

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
            raise BrokerConfigError(f"paper={paper!r}: the kit trades Alpaca paper accounts only")
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
            _http._sleep(delay)
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

