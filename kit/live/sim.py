"""A simulated broker whose whole state lives in the kit's database, with the next-open execution model
of :mod:`kit.portfolio.execution`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..store import schema as S
from ..store.engine import get_engine, read_tx, utc_now, write_tx
from .brokers import Account, Broker, Order, OrderNotFoundError, OrderRequest, Position

__all__ = ["SimBroker"]



def _day(x):
    import datetime as _dt

    if x is None:
        return None
    if isinstance(x, str):
        return _dt.date.fromisoformat(x[:10])
    return pd.Timestamp(x).date()



class SimBroker(Broker):
    """A simulated broker whose whole state lives in the kit's database (:mod:`kit.store`).

    Market orders are accepted (status ``submitted``) when sent and fill at the *next* bar's open
    (:meth:`fill_open`), at ``open (1 +- slippage_bps / 1e4)``, paying ``cost_bps / 1e4`` of the
    traded notional as commission; sells fill before buys; a buy the remaining cash cannot pay for
    is rejected (``insufficient cash``), as is an order for a symbol without an open that day
    (``no price``); an order that would take a position beyond ``limits.max_position`` of equity at
    the last price is rejected when sent (``position limit``). This is the execution model of
    :func:`next_open_reference`. Prices are whatever series the loop feeds it (the kit uses
    split- and dividend-adjusted prices, so holdings need no corporate-action handling).

    Every change is one database transaction (``kit.store.engine.write_tx``), so a crash leaves either the
    state before or after it; :meth:`submit` is idempotent on the client order id.

    Parameters
    ----------
    db : None, URL or Engine (see :func:`kit.store.engine.get_engine`).
    account : account name (several paper accounts can share a database).
    initial_cash : USD, used only when the account is created.
    cost_bps, slippage_bps : used only when the account is created; the stored values apply after.
    limits : optional :class:`kit.portfolio.Limits` checked on submission.

    Raises
    ------
    ValueError
        ``initial_cash`` not positive or a cost negative (at creation).
    """

    name = "sim"

    def __init__(self, db=None, account: str = "paper", initial_cash: float = 100_000.0, cost_bps: float = 5.0, slippage_bps: float = 0.0, limits=None):
        if not (np.isfinite(initial_cash) and initial_cash > 0):
            raise ValueError(f"initial_cash must be finite and > 0, got {initial_cash}")
        if not (cost_bps >= 0 and slippage_bps >= 0):
            raise ValueError(f"cost_bps and slippage_bps must be >= 0, got {cost_bps} and {slippage_bps}")
        self.engine = get_engine(db)
        self.account_name = account
        self.limits = limits
        t = S.TABLES
        with write_tx(self.engine, "paper") as conn:
            row = conn.execute(t["sim_accounts"].select().where(t["sim_accounts"].c.account == account)).mappings().first()
            if row is None:
                conn.execute(t["sim_accounts"].insert().values(
                    account=account, cash=float(initial_cash), initial_cash=float(initial_cash), cost_bps=float(cost_bps),
                    slippage_bps=float(slippage_bps), last_date=None, created_at=utc_now(),
                ))
                row = {"cost_bps": cost_bps, "slippage_bps": slippage_bps, "initial_cash": initial_cash}
        self.cost_bps = float(row["cost_bps"])
        self.slippage_bps = float(row["slippage_bps"])
        self.initial_cash = float(row["initial_cash"])

    def __repr__(self) -> str:
        return f"SimBroker(account={self.account_name!r}, url={self.engine.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------------------ reads
    def _acct(self, conn):
        t = S.TABLES["sim_accounts"]
        return conn.execute(t.select().where(t.c.account == self.account_name)).mappings().one()

    def _positions(self, conn) -> pd.DataFrame:
        t = S.TABLES["sim_positions"]
        rows = conn.execute(t.select().where(t.c.account == self.account_name).order_by(t.c.symbol)).mappings().all()
        return pd.DataFrame(rows, columns=["account", "symbol", "qty", "avg_price", "last_price"]).set_index("symbol")

    def account(self) -> Account:
        """Cash, equity (cash + holdings at their last marked price) and buying power (= cash), USD."""
        with read_tx(self.engine) as conn:
            a = self._acct(conn)
            pos = self._positions(conn)
        held = float((pos["qty"] * pos["last_price"].fillna(pos["avg_price"])).sum()) if len(pos) else 0.0
        return Account(cash=float(a["cash"]), equity=float(a["cash"]) + held, buying_power=float(a["cash"]))

    def last_date(self):
        """The last date marked (:meth:`mark`), or None."""
        with read_tx(self.engine) as conn:
            return self._acct(conn)["last_date"]

    def positions(self) -> dict[str, Position]:
        """Non-zero holdings by symbol (shares; market value at the last marked price)."""
        with read_tx(self.engine) as conn:
            pos = self._positions(conn)
        out = {}
        for sym, r in pos.iterrows():
            if r["qty"] != 0:
                px = r["last_price"] if r["last_price"] is not None and np.isfinite(r["last_price"]) else r["avg_price"]
                out[sym] = Position(sym, float(r["qty"]), float(r["avg_price"]), float(r["qty"] * px))
        return out

    @staticmethod
    def _order(r) -> Order:
        import datetime as _dt

        def ts(x):
            return _dt.datetime.fromisoformat(x.replace("Z", "+00:00")) if x else None

        return Order(
            id=str(r["id"]), client_order_id=r["client_order_id"], symbol=r["symbol"], side=r["side"], qty=float(r["qty"]),
            status=r["status"], filled_qty=float(r["filled_qty"] or 0.0), filled_avg_price=r["filled_avg_price"],
            reject_reason=r["reject_reason"], submitted_at=ts(r["submitted_at"]), filled_at=ts(r["filled_at"]), broker_status=r["status"],
        )

    def get_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order with this client order id, or None."""
        t = S.TABLES["sim_orders"]
        with read_tx(self.engine) as conn:
            r = conn.execute(t.select().where((t.c.account == self.account_name) & (t.c.client_order_id == client_order_id))).mappings().first()
        return None if r is None else self._order(r)

    def order_status(self, order_id: str) -> Order:
        """The order with this id; :class:`kit.live.brokers.OrderNotFoundError` if unknown."""
        t = S.TABLES["sim_orders"]
        try:
            oid = int(order_id)
        except (TypeError, ValueError):
            raise OrderNotFoundError(f"order id {order_id!r} is not a SimBroker order id") from None
        with read_tx(self.engine) as conn:
            r = conn.execute(t.select().where((t.c.account == self.account_name) & (t.c.id == oid))).mappings().first()
        if r is None:
            raise OrderNotFoundError(f"no order with id {order_id!r} in account {self.account_name!r}")
        return self._order(r)

    def open_orders(self) -> list[Order]:
        """Orders still working (``submitted``), oldest first."""
        t = S.TABLES["sim_orders"]
        with read_tx(self.engine) as conn:
            rows = conn.execute(t.select().where((t.c.account == self.account_name) & (t.c.status == "submitted")).order_by(t.c.id)).mappings().all()
        return [self._order(r) for r in rows]

    def orders(self) -> pd.DataFrame:
        """Every order of the account (a DataFrame of the ``sim_orders`` rows)."""
        t = S.TABLES["sim_orders"]
        with read_tx(self.engine) as conn:
            rows = conn.execute(t.select().where(t.c.account == self.account_name).order_by(t.c.id)).mappings().all()
        return pd.DataFrame(rows)

    def fills(self) -> pd.DataFrame:
        """Every fill of the account (a DataFrame of the ``sim_fills`` rows)."""
        t = S.TABLES["sim_fills"]
        with read_tx(self.engine) as conn:
            rows = conn.execute(t.select().where(t.c.account == self.account_name).order_by(t.c.id)).mappings().all()
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------ writes
    def submit(self, request: OrderRequest, decided_on=None) -> Order:
        """Accept a market order (status ``submitted``) to fill at the next :meth:`fill_open`, or
        return the existing order with the same client order id (nothing new is written). An order
        that would break ``limits.max_position`` at the last marked price is stored ``rejected``."""
        t = S.TABLES
        so = t["sim_orders"]
        with write_tx(self.engine, "paper") as conn:
            r = conn.execute(so.select().where((so.c.account == self.account_name) & (so.c.client_order_id == request.client_order_id))).mappings().first()
            if r is not None:
                if r["symbol"] != request.symbol or r["side"] != request.side:
                    raise ValueError(f"client_order_id {request.client_order_id!r} already names a {r['side']} of {r['symbol']}, not a {request.side} of {request.symbol}")
                return self._order(r)
            status, reason = "submitted", None
            if self.limits is not None and np.isfinite(self.limits.max_position):
                a = self._acct(conn)
                pos = self._positions(conn)
                held = float((pos["qty"] * pos["last_price"].fillna(pos["avg_price"])).sum()) if len(pos) else 0.0
                equity = float(a["cash"]) + held
                px = pos["last_price"].get(request.symbol) if request.symbol in pos.index else None
                q0 = float(pos["qty"].get(request.symbol, 0.0)) if len(pos) else 0.0
                if px is not None and np.isfinite(px) and equity > 0:
                    w_after = abs(q0 + request.signed_qty) * px / equity
                    if w_after > self.limits.max_position * (1 + 1e-9) and abs(q0 + request.signed_qty) > abs(q0):
                        status, reason = "rejected", f"position limit: {w_after:.4f} of equity > max_position {self.limits.max_position}"
            res = conn.execute(so.insert().values(
                account=self.account_name, client_order_id=request.client_order_id, symbol=request.symbol, side=request.side,
                qty=float(request.qty), status=status, decided_on=_day(decided_on) if decided_on is not None else self._acct(conn)["last_date"],
                submitted_at=utc_now(), filled_qty=0.0, commission=0.0, reject_reason=reason,
            ))
            oid = res.inserted_primary_key[0]
            r = conn.execute(so.select().where(so.c.id == oid)).mappings().one()
        return self._order(r)

    def cancel(self, order_id: str) -> Order:
        """Cancel a working order (a filled or rejected order stays as it is)."""
        so = S.TABLES["sim_orders"]
        o = self.order_status(order_id)
        if o.status == "submitted":
            with write_tx(self.engine, "paper") as conn:
                conn.execute(so.update().where((so.c.id == int(order_id)) & (so.c.status == "submitted")).values(status="cancelled", reject_reason="cancelled by request"))
        return self.order_status(order_id)

    def start_day(self, as_of, open_prices: pd.Series, close_prices: pd.Series) -> list[Order]:
        """Fill the working orders at ``as_of``'s open (:meth:`fill_open`) and mark its close
        (:meth:`mark`); returns the orders filled or rejected."""
        fills = self.fill_open(as_of, open_prices)
        self.mark(as_of, close_prices)
        return fills

    def fill_open(self, date, open_prices: pd.Series) -> list[Order]:
        """Fill every working order decided before ``date`` at that day's open, in one transaction.

        Sells first (symbol order), then buys while cash lasts; ``open_prices`` (USD per share by
        symbol) without a finite positive price for an order's symbol rejects it (``no price``).
        Returns the orders filled or rejected. Idempotent: a second call finds nothing left.
        """
        t = S.TABLES
        so, sp, sa_, sf = t["sim_orders"], t["sim_positions"], t["sim_accounts"], t["sim_fills"]
        day = _day(date)
        cost, slip = self.cost_bps / 1e4, self.slippage_bps / 1e4
        done = []
        with write_tx(self.engine, "paper") as conn:
            work = conn.execute(
                so.select().where((so.c.account == self.account_name) & (so.c.status == "submitted") & (so.c.decided_on < day))
            ).mappings().all()
            if not work:
                return []
            cash = float(self._acct(conn)["cash"])
            pos = self._positions(conn)
            sells = sorted((r for r in work if r["side"] == "sell"), key=lambda r: (r["symbol"], r["id"]))
            buys = sorted((r for r in work if r["side"] == "buy"), key=lambda r: (r["symbol"], r["id"]))
            now = utc_now()
            for r in sells + buys:
                sym, qty = r["symbol"], float(r["qty"])
                px = open_prices.get(sym) if sym in open_prices.index else None
                if px is None or not (np.isfinite(px) and px > 0):
                    conn.execute(so.update().where(so.c.id == r["id"]).values(status="rejected", reject_reason="no price", fill_date=day))
                    done.append(r["id"])
                    continue
                sign = 1.0 if r["side"] == "buy" else -1.0
                price = float(px) * (1.0 + sign * slip)
                notional = qty * price
                fee = notional * cost
                if sign > 0 and notional + fee > cash + 1e-9 * max(1.0, abs(cash)):
                    conn.execute(so.update().where(so.c.id == r["id"]).values(
                        status="rejected", reject_reason=f"insufficient cash: needs {notional + fee:.2f}, has {cash:.2f}", fill_date=day))
                    done.append(r["id"])
                    continue
                cash += -sign * notional - fee
                q0 = float(pos["qty"].get(sym, 0.0)) if sym in pos.index else 0.0
                avg0 = float(pos["avg_price"].get(sym, 0.0)) if sym in pos.index else 0.0
                q1 = q0 + sign * qty
                if q0 == 0 or np.sign(q1) != np.sign(q0):
                    avg1 = price if q1 != 0 else 0.0
                elif abs(q1) > abs(q0):
                    avg1 = (abs(q0) * avg0 + qty * price) / abs(q1)
                else:
                    avg1 = avg0
                if sym in pos.index:
                    conn.execute(sp.update().where((sp.c.account == self.account_name) & (sp.c.symbol == sym)).values(qty=q1, avg_price=avg1))
                    pos.loc[sym, ["qty", "avg_price"]] = [q1, avg1]
                else:
                    conn.execute(sp.insert().values(account=self.account_name, symbol=sym, qty=q1, avg_price=avg1, last_price=float(px)))
                    pos.loc[sym] = [self.account_name, q1, avg1, float(px)]
                conn.execute(so.update().where(so.c.id == r["id"]).values(
                    status="filled", filled_qty=qty, filled_avg_price=price, commission=fee, fill_date=day, filled_at=now))
                conn.execute(sf.insert().values(order_id=r["id"], account=self.account_name, symbol=sym, side=r["side"], qty=qty, price=price, commission=fee, fill_date=day))
                done.append(r["id"])
            conn.execute(sa_.update().where(sa_.c.account == self.account_name).values(cash=cash))
            rows = conn.execute(so.select().where(so.c.id.in_(done)).order_by(so.c.id)).mappings().all()
        return [self._order(r) for r in rows]

    def mark(self, date, close: pd.Series) -> None:
        """Record ``close`` (USD per share by symbol) as the last price of every symbol given (held
        or not: the position limit on submission needs it) and ``date`` as the account's last date
        (one transaction). Symbols without a finite positive close keep their previous mark."""
        import sqlalchemy as sa

        t = S.TABLES
        sp, sa_ = t["sim_positions"], t["sim_accounts"]
        px = pd.Series(close, dtype="float64")
        px = px[np.isfinite(px.to_numpy()) & (px.to_numpy() > 0)]
        with write_tx(self.engine, "paper") as conn:
            have = set(self._positions(conn).index)
            upd = [{"a": self.account_name, "s": str(k), "p": float(v)} for k, v in px.items() if k in have]
            new = [{"account": self.account_name, "symbol": str(k), "qty": 0.0, "avg_price": 0.0, "last_price": float(v)} for k, v in px.items() if k not in have]
            if upd:
                conn.execute(
                    sp.update().where((sp.c.account == sa.bindparam("a")) & (sp.c.symbol == sa.bindparam("s"))).values(last_price=sa.bindparam("p")), upd
                )
            if new:
                conn.execute(sp.insert(), new)
            conn.execute(sa_.update().where(sa_.c.account == self.account_name).values(last_date=_day(date)))

    def reset(self) -> None:
        """Delete the account's orders, fills, positions and the account itself (one transaction);
        the next :class:`SimBroker` for this account starts again with ``initial_cash``."""
        t = S.TABLES
        with write_tx(self.engine, "paper") as conn:
            ids = _order_ids(conn, t["sim_orders"], self.account_name)
            if ids:
                conn.execute(t["sim_fills"].delete().where(t["sim_fills"].c.order_id.in_(ids)))
            for name in ("sim_orders", "sim_positions", "sim_accounts", "paper_runs", "paper_targets", "paper_checks", "paper_orders"):
                tab = t[name]
                conn.execute(tab.delete().where(tab.c.account == self.account_name))



def _order_ids(conn, table, account: str) -> list[int]:
    """Ids of ``table``'s rows for ``account``."""
    return [r[0] for r in conn.execute(sa.select(table.c.id).where(table.c.account == account))]

