"""A local fake of the Alpaca REST endpoints that :mod:`kit.live.brokers` calls, with fault injection.

A stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` (port chosen by the OS) that answers the paths
alpaca-py 0.44.0 requests (read from its source: ``alpaca/trading/client.py``,
``alpaca/data/historical/stock.py``, ``alpaca/common/rest.py``) with JSON in the shapes its models parse:

=======  ==============================================  ==========================================
method   path                                            answer
=======  ==============================================  ==========================================
GET      /v2/account                                     ``TradeAccount`` fields (numbers as strings)
GET      /v2/positions                                   list of ``Position``
POST     /v2/orders                                      ``Order`` (status ``accepted``); 422 on a
                                                         reused client_order_id; 403 on insufficient
                                                         buying power; 422 on an unknown symbol
GET      /v2/orders?status=open                          list of open ``Order``
GET      /v2/orders/{id}                                 ``Order`` or 404
GET      /v2/orders:by_client_order_id?client_order_id=  ``Order`` or 404
DELETE   /v2/orders/{id}                                 204; 404 unknown; 422 not cancelable
GET      /v2/stocks/bars                                 ``{"bars": {sym: [{t,o,h,l,c,v,n,vw}]},
                                                         "next_page_token": ...}`` paged
=======  ==============================================  ==========================================

Every request must carry the expected ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers, otherwise
401. Error bodies are ``{"code": ..., "message": ...}`` as Alpaca sends them. The server never echoes
a header back.

Faults (:meth:`FakeAlpaca.inject`) match a method and an exact path and fire ``times`` times, after
letting the first ``after`` matching requests through:

* ``status``: answer with an HTTP status and message instead (e.g. 429, 500, 503);
* ``sleep``: wait ``seconds`` before handling (``when="before"``) or after handling but before
  answering (``when="after"``: the request takes effect but the client times out);
* ``drop``: close the connection without an answer and without handling (``when="before"``), or
  handle, send the status line and headers and close (``when="after_headers"``), or handle and close
  half-way through the body (``when="mid_body"``).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd

_NY = "America/New_York"


@dataclass
class Fault:
    method: str
    path: str
    kind: str
    times: int = 1
    status: int = 500
    message: str = "internal error"
    seconds: float = 0.0
    when: str = "before"
    after: int = 0


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _num(x: float) -> str:
    return repr(float(x))


class FakeAlpaca:
    """The fake server and its state (account, positions, orders, bars).

    Parameters
    ----------
    api_key, secret_key : str
        The credentials the server accepts.
    cash : float
        Starting cash, USD.
    prices : dict of str to float
        Last prices (USD per share) of the tradable symbols; buys above buying power are refused.
    bars : DataFrame, optional
        Tidy daily bars in the kit's store schema (``symbol, date, open, high, low, close,
        adjusted_close, volume``) served by ``/v2/stocks/bars``: raw prices for ``adjustment=raw``;
        for ``adjustment=all`` the close is ``adjusted_close`` and open/high/low are scaled by
        ``adjusted_close / close``.
    page_size : int
        Bars per page of ``/v2/stocks/bars`` (small values exercise alpaca-py's paging).
    """

    def __init__(
        self,
        api_key: str = "fake-key",
        secret_key: str = "fake-secret",
        cash: float = 100_000.0,
        prices: dict[str, float] | None = None,
        bars: pd.DataFrame | None = None,
        page_size: int = 1000,
    ):
        self.api_key, self.secret_key = api_key, secret_key
        self.cash = float(cash)
        self.prices = dict(prices or {"AAPL": 130.0, "MSFT": 250.0, "KO": 50.0})
        self.bars = bars
        self.page_size = int(page_size)
        self.orders: dict[str, dict] = {}
        self.positions: dict[str, dict] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str]] = []
        self.bar_queries: list[dict] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAlpaca:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- test controls
    def inject(self, method: str, path: str, kind: str, times: int = 1, **kw) -> Fault:
        """Add a fault for ``method path`` (path without the query string, e.g. ``/v2/orders``)."""
        if kind not in ("status", "sleep", "drop"):
            raise ValueError(f"kind={kind!r}")
        fault = Fault(method.upper(), path, kind, times, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, path: str) -> int:
        """How many requests reached the server for ``method path``."""
        with self.lock:
            return sum(1 for m, p in self.log if m == method.upper() and p == path)

    def fill(self, order_id: str, price: float, qty: float | None = None) -> None:
        """Fill an order (fully, or ``qty`` shares of it) at ``price``; updates positions and cash."""
        with self.lock:
            o = self.orders[order_id]
            qty = float(o["qty"]) - float(o["filled_qty"]) if qty is None else float(qty)
            done = float(o["filled_qty"])
            avg = float(o["filled_avg_price"] or 0.0)
            new_done = done + qty
            o["filled_avg_price"] = _num((avg * done + price * qty) / new_done)
            o["filled_qty"] = _num(new_done)
            o["status"] = "filled" if new_done >= float(o["qty"]) else "partially_filled"
            o["filled_at"] = o["updated_at"] = _now()
            sign = 1.0 if o["side"] == "buy" else -1.0
            pos = self.positions.setdefault(o["symbol"], {"qty": 0.0, "avg": 0.0})
            old = pos["qty"]
            new = old + sign * qty
            if old == 0 or (old > 0) == (sign > 0):
                pos["avg"] = (abs(old) * pos["avg"] + qty * price) / abs(new)
            elif new != 0 and (new > 0) != (old > 0):
                pos["avg"] = price
            pos["qty"] = new
            if new == 0:
                del self.positions[o["symbol"]]
            self.cash -= sign * qty * price
            self.prices[o["symbol"]] = price

    def set_status(self, order_id: str, status: str) -> None:
        """Move an order to an Alpaca status (e.g. ``rejected`` after acceptance, ``expired``)."""
        with self.lock:
            self.orders[order_id]["status"] = status
            self.orders[order_id]["updated_at"] = _now()

    # ---------------------------------------------------------------- state -> JSON
    def _equity(self) -> float:
        return self.cash + sum(p["qty"] * self.prices[s] for s, p in self.positions.items())

    def account_json(self) -> dict:
        eq = self._equity()
        return {
            "id": "2d7b6a39-5e4c-4f0e-9c3b-6f0a6f1d2b11",
            "account_number": "PA0000FAKE",
            "status": "ACTIVE",
            "currency": "USD",
            "cash": _num(self.cash),
            "equity": _num(eq),
            "portfolio_value": _num(eq),
            "buying_power": _num(max(self.cash, 0.0)),
            "regt_buying_power": _num(max(self.cash, 0.0)),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "shorting_enabled": True,
            "multiplier": "1",
            "created_at": "2024-01-02T15:00:00Z",
        }

    def position_json(self, symbol: str) -> dict:
        p = self.positions[symbol]
        price = self.prices[symbol]
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)),
            "symbol": symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_equity",
            "avg_entry_price": _num(p["avg"]),
            "qty": _num(p["qty"]),
            "side": "long" if p["qty"] > 0 else "short",
            "market_value": _num(p["qty"] * price),
            "cost_basis": _num(p["qty"] * p["avg"]),
            "unrealized_pl": _num(p["qty"] * (price - p["avg"])),
            "current_price": _num(price),
            "qty_available": _num(p["qty"]),
        }

    # ---------------------------------------------------------------- routing
    def route(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, object]:
        if path == "/v2/account" and method == "GET":
            return 200, self.account_json()
        if path == "/v2/positions" and method == "GET":
            return 200, [self.position_json(s) for s in sorted(self.positions)]
        if path == "/v2/orders:by_client_order_id" and method == "GET":
            coid = query.get("client_order_id", [""])[0]
            for o in self.orders.values():
                if o["client_order_id"] == coid:
                    return 200, dict(o)
            return 404, {"code": 40410000, "message": f"order not found for {coid}"}
        if path == "/v2/orders" and method == "POST":
            return self._create_order(json.loads(body or b"{}"))
        if path == "/v2/orders" and method == "GET":
            status = query.get("status", ["open"])[0]
            limit = int(query.get("limit", ["50"])[0])
            open_ = {"new", "accepted", "pending_new", "partially_filled", "pending_cancel", "held"}
            rows = [dict(o) for o in self.orders.values() if status == "all" or (o["status"] in open_) == (status == "open")]
            return 200, rows[:limit]
        if path.startswith("/v2/orders/"):
            oid = path.rsplit("/", 1)[1]
            o = self.orders.get(oid)
            if o is None:
                return 404, {"code": 40410000, "message": "order not found"}
            if method == "GET":
                return 200, dict(o)
            if method == "DELETE":
                if o["status"] in ("filled", "canceled", "expired", "rejected"):
                    return 422, {"code": 42210000, "message": f"order is not cancelable (status {o['status']})"}
                o["status"] = "canceled"
                o["canceled_at"] = o["updated_at"] = _now()
                return 204, None
        if path == "/v2/stocks/bars" and method == "GET":
            return self._bars(query)
        return 404, {"code": 40410000, "message": f"no route {method} {path}"}

    def _create_order(self, req: dict) -> tuple[int, object]:
        coid = req.get("client_order_id") or str(uuid.uuid4())
        if any(o["client_order_id"] == coid for o in self.orders.values()):
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        symbol = req.get("symbol")
        if symbol not in self.prices:
            return 422, {"code": 40010001, "message": f'asset "{symbol}" not found'}
        qty = float(req.get("qty", 0))
        if not qty > 0:
            return 422, {"code": 40010001, "message": "qty must be > 0"}
        if req.get("side") == "buy" and qty * self.prices[symbol] > self.cash:
            return 403, {"code": 40310000, "message": "insufficient buying power"}
        now = _now()
        oid = str(uuid.uuid4())
        order = {
            "id": oid,
            "client_order_id": coid,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)),
            "symbol": symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": _num(qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "",
            "order_type": req.get("type", "market"),
            "type": req.get("type", "market"),
            "side": req.get("side"),
            "time_in_force": req.get("time_in_force", "day"),
            "limit_price": None,
            "stop_price": None,
            "status": "accepted",
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }
        self.orders[oid] = order
        return 200, dict(order)

    def _bars(self, query: dict) -> tuple[int, object]:
        with_q = {k: v[0] for k, v in query.items()}
        self.bar_queries.append(with_q)
        if with_q.get("timeframe") != "1Day":
            return 422, {"code": 42210000, "message": f"fake serves 1Day only, got {with_q.get('timeframe')}"}
        symbols = with_q.get("symbols", "").split(",")
        frame = self.bars if self.bars is not None else pd.DataFrame(columns=["symbol", "date"])
        frame = frame[frame["symbol"].isin(symbols)].sort_values(["symbol", "date"])
        ts = pd.DatetimeIndex(frame["date"]).tz_localize(_NY).tz_convert("UTC")
        keep = pd.Series(True, index=frame.index)
        if "start" in with_q:
            keep &= ts >= pd.Timestamp(with_q["start"])
        if "end" in with_q:
            keep &= ts <= pd.Timestamp(with_q["end"])
        frame, ts = frame[keep.to_numpy()], ts[keep.to_numpy()]
        offset = int(with_q.get("page_token") or 0)
        limit = min(int(with_q.get("limit") or 10_000), self.page_size)
        page = frame.iloc[offset : offset + limit]
        page_ts = ts[offset : offset + limit]
        adjusted = with_q.get("adjustment", "raw") == "all"
        out: dict[str, list] = {}
        for (_, r), t in zip(page.iterrows(), page_ts, strict=True):
            f = r["adjusted_close"] / r["close"] if adjusted else 1.0
            out.setdefault(r["symbol"], []).append(
                {
                    "t": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "o": r["open"] * f,
                    "h": r["high"] * f,
                    "l": r["low"] * f,
                    "c": r["adjusted_close"] if adjusted else r["close"],
                    "v": int(r["volume"]),
                    "n": 1000,
                    "vw": r["close"] * f,
                }
            )
        nxt = offset + limit
        return 200, {"bars": out, "next_page_token": str(nxt) if nxt < len(frame) else None}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAlpaca
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def _take_fault(self, method: str, path: str) -> Fault | None:
        fake = self.fake
        with fake.lock:
            for f in fake.faults:
                if f.method == method and f.path == path and f.times > 0:
                    if f.after > 0:
                        f.after -= 1
                        continue
                    f.times -= 1
                    return f
        return None

    def _serve(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with fake.lock:
            fake.log.append((method, path))
        if (self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")) != (fake.api_key, fake.secret_key):
            self._send(401, {"code": 40110000, "message": "request is not authorized"})
            return
        fault = self._take_fault(method, path)
        if fault is not None and fault.kind == "status":
            self._send(fault.status, {"code": fault.status * 100000, "message": fault.message})
            return
        if fault is not None and fault.kind == "drop" and fault.when == "before":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "sleep" and fault.when == "before":
            fake._stop.wait(fault.seconds)
        with fake.lock:
            status, payload = fake.route(method, path, query, body)
        if fault is not None and fault.kind == "sleep" and fault.when == "after":
            fake._stop.wait(fault.seconds)
        if fault is not None and fault.kind == "drop":
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault.when == "mid_body":
                self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(status, payload)

    def _send(self, status: int, payload) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)
