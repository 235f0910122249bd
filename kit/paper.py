"""Paper trading: order sizing, the next-open execution model and its reference backtest.

The daily step decides at the close of day t and trades at the open of day t + 1, as a desk
running after the close would:

1. at the close of t, equity ``E_t = cash_t + sum_i q_{t,i} close_{t,i}``;
2. target shares ``q*_{t,i} = w_{t,i} E_t / close_{t,i}`` for the accepted target weights
   ``w_t``; the order is ``q*_{t,i} - q_{t,i}`` shares (a market order, fractional shares allowed);
3. at the open of t + 1 the order fills at ``open_{t+1,i} (1 + s sign(order))`` (slippage ``s`` =
   ``slippage_bps / 1e4``) and pays a commission of ``cost_bps / 1e4`` of the traded notional;
   sells fill before buys; a buy that the cash left after the sells cannot pay for is rejected
   whole (reason ``insufficient cash``), as is any order for a symbol with no open price that day
   (reason ``no price``).

:func:`next_open_reference` computes exactly this in plain numpy from a ``(T, N)`` frame of
weights; the paper loop (:mod:`kit.paper` with :class:`SimBroker`) must reproduce it to float
rounding when replayed over the same weights, and vectorbt reproduces its fills and costs
(:func:`next_open_vectorbt`; tests in ``tests/test_paper.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "order_quantities",
    "NextOpenResult",
    "next_open_reference",
    "next_open_vectorbt",
]


def order_quantities(
    target_weights: pd.Series, current_qty: pd.Series, close: pd.Series, equity: float, min_qty: float = 1e-9
) -> pd.DataFrame:
    """Orders that move the book from ``current_qty`` to ``target_weights`` at today's close.

    Parameters
    ----------
    target_weights : (N,) accepted target weights, fractions of equity (positive long); a symbol
        held but absent here is closed (target 0).
    current_qty : (N,) shares held (signed; may include symbols not in the targets).
    close : (N,) closes of day t, USD per share, for every symbol of either series.
    equity : the account's equity at the close, USD (> 0).
    min_qty : orders smaller than this many shares are dropped (float dust).

    Returns
    -------
    DataFrame indexed by symbol (sorted) with ``side`` (``buy``/``sell``), ``qty`` (> 0 shares),
    ``target_qty``, ``current_qty``, ``close``.

    Raises
    ------
    ValueError
        ``equity`` not finite and positive; a target weight that is not finite; a symbol with a
        target or a holding but no finite positive close (named with its value).
    """
    if not (np.isfinite(equity) and equity > 0):
        raise ValueError(f"equity must be finite and > 0, got {equity}")
    tw = pd.Series(target_weights, dtype="float64")
    bad = tw[~np.isfinite(tw.to_numpy())]
    if len(bad):
        raise ValueError(f"target_weights[{bad.index[0]!r}] = {bad.iloc[0]} is not finite")
    cq = pd.Series(current_qty, dtype="float64").fillna(0.0)
    symbols = sorted(set(tw.index) | set(cq.index[cq != 0]))
    px = pd.Series(close, dtype="float64").reindex(symbols)
    for s in symbols:
        p = px.get(s)
        if not (p is not None and np.isfinite(p) and p > 0):
            raise ValueError(f"close[{s!r}] = {p} is not a finite positive price")
    tgt = tw.reindex(symbols).fillna(0.0) * equity / px
    cur = cq.reindex(symbols).fillna(0.0)
    delta = tgt - cur
    out = pd.DataFrame(
        {"side": np.where(delta > 0, "buy", "sell"), "qty": delta.abs(), "target_qty": tgt, "current_qty": cur, "close": px}
    )
    out.index.name = "symbol"
    return out[out["qty"] > min_qty]


@dataclass
class NextOpenResult:
    """Daily state of the next-open execution model.

    Attributes
    ----------
    equity : (T,) equity at each close, USD.
    returns : (T,) simple daily returns of equity (first day 0).
    cash : (T,) cash at each close, USD.
    qty : (T, N) shares held at each close.
    orders : (T, N) signed shares ordered at each close (filled, if at all, at the next open).
    filled : (T, N) signed shares filled at each open.
    commission : (T,) commissions paid at each open, USD.
    rejected : list of ``(date, symbol, reason)`` for rejected orders.
    """

    equity: pd.Series
    returns: pd.Series
    cash: pd.Series
    qty: pd.DataFrame
    orders: pd.DataFrame
    filled: pd.DataFrame
    commission: pd.Series
    rejected: list


def _fill_day(q, cash, order, open_px, cost, slip):
    """Fill ``order`` (N,) at ``open_px``: sells first, then buys while cash lasts (symbol order).
    Returns new q, cash, the filled (N,) vector, commission and the rejected indices with reasons."""
    filled = np.zeros_like(order)
    commission = 0.0
    rejected = []
    for i in np.flatnonzero((order < 0) & (order != 0)):
        if not (np.isfinite(open_px[i]) and open_px[i] > 0):
            rejected.append((i, "no price"))
            continue
        price = open_px[i] * (1.0 - slip)
        notional = -order[i] * price
        fee = notional * cost
        cash += notional - fee
        q[i] += order[i]
        filled[i] = order[i]
        commission += fee
    for i in np.flatnonzero(order > 0):
        if not (np.isfinite(open_px[i]) and open_px[i] > 0):
            rejected.append((i, "no price"))
            continue
        price = open_px[i] * (1.0 + slip)
        notional = order[i] * price
        fee = notional * cost
        if notional + fee > cash + 1e-9 * max(1.0, abs(cash)):
            rejected.append((i, "insufficient cash"))
            continue
        cash -= notional + fee
        q[i] += order[i]
        filled[i] = order[i]
        commission += fee
    return q, cash, filled, commission, rejected


def next_open_reference(
    close: pd.DataFrame,
    open_: pd.DataFrame,
    weights: pd.DataFrame,
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    initial_cash: float = 100_000.0,
    min_qty: float = 1e-9,
) -> NextOpenResult:
    """Plain-numpy backtest of the paper loop's execution model (module docstring): decide at the
    close of t from ``weights`` row t, fill at the open of t + 1 with slippage and commission.

    Parameters
    ----------
    close, open_ : (T, N) raw-or-adjusted closes and opens (one consistent price series), USD; NaN
        where a symbol does not trade.
    weights : (T, N) accepted target weights, fractions of equity; NaN counts as 0 (no position).
    cost_bps : commission, basis points of traded notional. slippage_bps : basis points of price.
    initial_cash : USD at the start.

    Returns
    -------
    :class:`NextOpenResult`.

    Raises
    ------
    ValueError
        Mismatched labels, negative costs, non-positive ``initial_cash``, or a target on a symbol
        without a close (see :func:`order_quantities`).
    """
    if not (close.index.equals(open_.index) and close.index.equals(weights.index)):
        raise ValueError("close, open_ and weights must share the same dates")
    if not (list(close.columns) == list(open_.columns) == list(weights.columns)):
        raise ValueError("close, open_ and weights must share the same symbols in the same order")
    if cost_bps < 0 or slippage_bps < 0:
        raise ValueError(f"cost_bps and slippage_bps must be >= 0, got {cost_bps} and {slippage_bps}")
    if not initial_cash > 0:
        raise ValueError(f"initial_cash must be > 0, got {initial_cash}")
    c = close.to_numpy(dtype="float64")
    o = open_.to_numpy(dtype="float64")
    w = np.nan_to_num(weights.to_numpy(dtype="float64"), nan=0.0)
    T, N = c.shape
    cost, slip = cost_bps / 1e4, slippage_bps / 1e4
    q = np.zeros(N)
    cash = float(initial_cash)
    equity = np.zeros(T)
    cash_t = np.zeros(T)
    qty = np.zeros((T, N))
    orders = np.zeros((T, N))
    filled = np.zeros((T, N))
    commission = np.zeros(T)
    rejected = []
    pending = np.zeros(N)
    last_px = np.full(N, np.nan)
    for t in range(T):
        if pending.any():
            q, cash, filled[t], commission[t], rej = _fill_day(q, cash, pending, o[t], cost, slip)
            rejected += [(close.index[t], close.columns[i], why) for i, why in rej]
        last_px = np.where(np.isfinite(c[t]), c[t], last_px)
        held_value = np.where(q != 0, q * np.nan_to_num(last_px), 0.0).sum()
        equity[t] = cash + held_value
        cash_t[t] = cash
        qty[t] = q
        tradable = np.isfinite(c[t]) & (c[t] > 0)
        target = np.where(tradable, w[t] * equity[t] / np.where(tradable, c[t], 1.0), q)
        # a symbol without a close today keeps its holding: there is no price to size an order with
        pending = target - q
        pending[np.abs(pending) <= min_qty] = 0.0
        orders[t] = pending
    eq = pd.Series(equity, index=close.index, name="equity")
    return NextOpenResult(
        equity=eq,
        returns=eq.pct_change().fillna(0.0).rename("returns"),
        cash=pd.Series(cash_t, index=close.index, name="cash"),
        qty=pd.DataFrame(qty, index=close.index, columns=close.columns),
        orders=pd.DataFrame(orders, index=close.index, columns=close.columns),
        filled=pd.DataFrame(filled, index=close.index, columns=close.columns),
        commission=pd.Series(commission, index=close.index, name="commission"),
        rejected=rejected,
    )


def next_open_vectorbt(
    close: pd.DataFrame, open_: pd.DataFrame, filled: pd.DataFrame, cost_bps: float = 0.0, slippage_bps: float = 0.0, initial_cash: float = 100_000.0
):
    """vectorbt replay of given fills: ``filled`` (T, N) signed shares traded at each day's open
    (``Portfolio.from_orders`` with ``size_type="amount"``, ``price=open_``, fees and slippage as
    fractions, cash shared, sells before buys), valued at the close. Returns the vectorbt
    portfolio; its ``value()`` equals :func:`next_open_reference`'s equity when the fills are the
    reference's (tested), which cross-checks the fill prices, commissions and cash accounting.
    """
    import vectorbt as vbt

    size = filled.replace(0.0, np.nan)
    return vbt.Portfolio.from_orders(
        close=close.ffill(),
        size=size,
        size_type="amount",
        price=open_,
        fees=cost_bps / 1e4,
        slippage=slippage_bps / 1e4,
        init_cash=initial_cash,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )


# ================================================================================================
# state tables (created by kit.db's migration 2)
# ================================================================================================


def define_tables(md):
    """The paper-trading tables on SQLAlchemy MetaData ``md`` (schema version 2; frozen: a later
    version changes them through a migration in :mod:`kit.db`).

    ``sim_accounts``, ``sim_positions``, ``sim_orders``, ``sim_fills``: the simulated broker's
    state. ``paper_runs`` (one row per account and trading day, status ``started`` then ``done``),
    ``paper_targets`` (model position, target and accepted weight per symbol and day),
    ``paper_checks`` (every pre-trade violation and its action) and ``paper_orders`` (the loop's
    journal of the orders it sent to whichever broker, by client order id).
    """
    import sqlalchemy as sa

    t = {}
    t["sim_accounts"] = sa.Table(
        "sim_accounts", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("cash", sa.Double, nullable=False),
        sa.Column("initial_cash", sa.Double, nullable=False),
        sa.Column("cost_bps", sa.Double, nullable=False),
        sa.Column("slippage_bps", sa.Double, nullable=False),
        sa.Column("last_date", sa.Date, nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    t["sim_positions"] = sa.Table(
        "sim_positions", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("avg_price", sa.Double, nullable=False),
        sa.Column("last_price", sa.Double, nullable=True),
    )
    t["sim_orders"] = sa.Table(
        "sim_orders", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decided_on", sa.Date, nullable=True),
        sa.Column("submitted_at", sa.String(32), nullable=False),
        sa.Column("filled_qty", sa.Double, nullable=False, default=0.0),
        sa.Column("filled_avg_price", sa.Double, nullable=True),
        sa.Column("commission", sa.Double, nullable=False, default=0.0),
        sa.Column("fill_date", sa.Date, nullable=True),
        sa.Column("filled_at", sa.String(32), nullable=True),
        sa.Column("reject_reason", sa.String(500), nullable=True),
        sa.UniqueConstraint("account", "client_order_id", name="uq_sim_orders_client_id"),
        sa.CheckConstraint("status IN ('new', 'submitted', 'partially_filled', 'filled', 'rejected', 'cancelled')", name="ck_sim_orders_status"),
        sqlite_autoincrement=True,
    )
    t["sim_fills"] = sa.Table(
        "sim_fills", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("sim_orders.id"), nullable=False, unique=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("price", sa.Double, nullable=False),
        sa.Column("commission", sa.Double, nullable=False),
        sa.Column("fill_date", sa.Date, nullable=False),
        sqlite_autoincrement=True,
    )
    t["paper_runs"] = sa.Table(
        "paper_runs", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("broker", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("equity", sa.Double, nullable=True),
        sa.Column("cash", sa.Double, nullable=True),
        sa.Column("n_orders", sa.Integer, nullable=True),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("info", sa.JSON, nullable=True),
        sa.CheckConstraint("status IN ('started', 'done')", name="ck_paper_runs_status"),
    )
    t["paper_targets"] = sa.Table(
        "paper_targets", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("position", sa.Double, nullable=True),
        sa.Column("ex_ante_vol", sa.Double, nullable=True),
        sa.Column("target_weight", sa.Double, nullable=False),
        sa.Column("accepted_weight", sa.Double, nullable=False),
        sa.Column("current_weight", sa.Double, nullable=False),
        sa.Column("close", sa.Double, nullable=True),
    )
    t["paper_checks"] = sa.Table(
        "paper_checks", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("check", sa.String(64), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("limit", sa.Double, nullable=True),
        sa.Column("action", sa.String(500), nullable=False),
        sqlite_autoincrement=True,
    )
    t["paper_orders"] = sa.Table(
        "paper_orders", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("client_order_id", sa.String(128), primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=True),
        sa.Column("filled_qty", sa.Double, nullable=True),
        sa.Column("filled_avg_price", sa.Double, nullable=True),
        sa.Column("reject_reason", sa.String(500), nullable=True),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    return t


def _tables():
    import sqlalchemy as sa

    global _TABLES
    if _TABLES is None:
        _TABLES = define_tables(sa.MetaData())
    return _TABLES


_TABLES = None


def _day(x):
    import datetime as _dt

    if x is None:
        return None
    if isinstance(x, str):
        return _dt.date.fromisoformat(x[:10])
    return pd.Timestamp(x).date()


# ================================================================================================
# simulated broker
# ================================================================================================

from .brokers import Account, Broker, Order, OrderNotFoundError, OrderRequest, Position  # noqa: E402


class SimBroker(Broker):
    """A simulated broker whose whole state lives in the kit's database (:mod:`kit.db`).

    Market orders are accepted (status ``submitted``) when sent and fill at the *next* bar's open
    (:meth:`fill_open`), at ``open (1 +- slippage_bps / 1e4)``, paying ``cost_bps / 1e4`` of the
    traded notional as commission; sells fill before buys; a buy the remaining cash cannot pay for
    is rejected (``insufficient cash``), as is an order for a symbol without an open that day
    (``no price``); an order that would take a position beyond ``limits.max_position`` of equity at
    the last price is rejected when sent (``position limit``). This is the execution model of
    :func:`next_open_reference`. Prices are whatever series the loop feeds it (the kit uses
    split- and dividend-adjusted prices, so holdings need no corporate-action handling).

    Every change is one database transaction (``kit.db.write_tx``), so a crash leaves either the
    state before or after it; :meth:`submit` is idempotent on the client order id.

    Parameters
    ----------
    db : None, URL or Engine (see :func:`kit.db.get_engine`).
    account : account name (several paper accounts can share a database).
    initial_cash : USD, used only when the account is created.
    cost_bps, slippage_bps : used only when the account is created; the stored values apply after.
    limits : optional :class:`kit.risk.Limits` checked on submission.

    Raises
    ------
    ValueError
        ``initial_cash`` not positive or a cost negative (at creation).
    """

    name = "sim"

    def __init__(self, db=None, account: str = "paper", initial_cash: float = 100_000.0, cost_bps: float = 5.0, slippage_bps: float = 0.0, limits=None):
        from . import db as kdb

        if not (np.isfinite(initial_cash) and initial_cash > 0):
            raise ValueError(f"initial_cash must be finite and > 0, got {initial_cash}")
        if not (cost_bps >= 0 and slippage_bps >= 0):
            raise ValueError(f"cost_bps and slippage_bps must be >= 0, got {cost_bps} and {slippage_bps}")
        self.engine = kdb.get_engine(db)
        self.account_name = account
        self.limits = limits
        t = _tables()
        with kdb.write_tx(self.engine, "paper") as conn:
            row = conn.execute(t["sim_accounts"].select().where(t["sim_accounts"].c.account == account)).mappings().first()
            if row is None:
                conn.execute(t["sim_accounts"].insert().values(
                    account=account, cash=float(initial_cash), initial_cash=float(initial_cash), cost_bps=float(cost_bps),
                    slippage_bps=float(slippage_bps), last_date=None, created_at=kdb.utc_now(),
                ))
                row = {"cost_bps": cost_bps, "slippage_bps": slippage_bps, "initial_cash": initial_cash}
        self.cost_bps = float(row["cost_bps"])
        self.slippage_bps = float(row["slippage_bps"])
        self.initial_cash = float(row["initial_cash"])

    def __repr__(self) -> str:
        return f"SimBroker(account={self.account_name!r}, url={self.engine.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------------------ reads
    def _acct(self, conn):
        t = _tables()["sim_accounts"]
        return conn.execute(t.select().where(t.c.account == self.account_name)).mappings().one()

    def _positions(self, conn) -> pd.DataFrame:
        t = _tables()["sim_positions"]
        rows = conn.execute(t.select().where(t.c.account == self.account_name).order_by(t.c.symbol)).mappings().all()
        return pd.DataFrame(rows, columns=["account", "symbol", "qty", "avg_price", "last_price"]).set_index("symbol")

    def account(self) -> Account:
        """Cash, equity (cash + holdings at their last marked price) and buying power (= cash), USD."""
        from . import db as kdb

        with kdb.read_tx(self.engine) as conn:
            a = self._acct(conn)
            pos = self._positions(conn)
        held = float((pos["qty"] * pos["last_price"].fillna(pos["avg_price"])).sum()) if len(pos) else 0.0
        return Account(cash=float(a["cash"]), equity=float(a["cash"]) + held, buying_power=float(a["cash"]))

    def last_date(self):
        """The last date marked (:meth:`mark`), or None."""
        from . import db as kdb

        with kdb.read_tx(self.engine) as conn:
            return self._acct(conn)["last_date"]

    def positions(self) -> dict[str, Position]:
        """Non-zero holdings by symbol (shares; market value at the last marked price)."""
        from . import db as kdb

        with kdb.read_tx(self.engine) as conn:
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
        from . import db as kdb

        t = _tables()["sim_orders"]
        with kdb.read_tx(self.engine) as conn:
            r = conn.execute(t.select().where((t.c.account == self.account_name) & (t.c.client_order_id == client_order_id))).mappings().first()
        return None if r is None else self._order(r)

    def order_status(self, order_id: str) -> Order:
        """The order with this id; :class:`kit.brokers.OrderNotFoundError` if unknown."""
        from . import db as kdb

        t = _tables()["sim_orders"]
        try:
            oid = int(order_id)
        except (TypeError, ValueError):
            raise OrderNotFoundError(f"order id {order_id!r} is not a SimBroker order id") from None
        with kdb.read_tx(self.engine) as conn:
            r = conn.execute(t.select().where((t.c.account == self.account_name) & (t.c.id == oid))).mappings().first()
        if r is None:
            raise OrderNotFoundError(f"no order with id {order_id!r} in account {self.account_name!r}")
        return self._order(r)

    def open_orders(self) -> list[Order]:
        """Orders still working (``submitted``), oldest first."""
        from . import db as kdb

        t = _tables()["sim_orders"]
        with kdb.read_tx(self.engine) as conn:
            rows = conn.execute(t.select().where((t.c.account == self.account_name) & (t.c.status == "submitted")).order_by(t.c.id)).mappings().all()
        return [self._order(r) for r in rows]

    def orders(self) -> pd.DataFrame:
        """Every order of the account (a DataFrame of the ``sim_orders`` rows)."""
        from . import db as kdb

        t = _tables()["sim_orders"]
        with kdb.read_tx(self.engine) as conn:
            rows = conn.execute(t.select().where(t.c.account == self.account_name).order_by(t.c.id)).mappings().all()
        return pd.DataFrame(rows)

    def fills(self) -> pd.DataFrame:
        """Every fill of the account (a DataFrame of the ``sim_fills`` rows)."""
        from . import db as kdb

        t = _tables()["sim_fills"]
        with kdb.read_tx(self.engine) as conn:
            rows = conn.execute(t.select().where(t.c.account == self.account_name).order_by(t.c.id)).mappings().all()
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------ writes
    def submit(self, request: OrderRequest, decided_on=None) -> Order:
        """Accept a market order (status ``submitted``) to fill at the next :meth:`fill_open`, or
        return the existing order with the same client order id (nothing new is written). An order
        that would break ``limits.max_position`` at the last marked price is stored ``rejected``."""
        from . import db as kdb

        t = _tables()
        so = t["sim_orders"]
        with kdb.write_tx(self.engine, "paper") as conn:
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
                submitted_at=kdb.utc_now(), filled_qty=0.0, commission=0.0, reject_reason=reason,
            ))
            oid = res.inserted_primary_key[0]
            r = conn.execute(so.select().where(so.c.id == oid)).mappings().one()
        return self._order(r)

    def cancel(self, order_id: str) -> Order:
        """Cancel a working order (a filled or rejected order stays as it is)."""
        from . import db as kdb

        so = _tables()["sim_orders"]
        o = self.order_status(order_id)
        if o.status == "submitted":
            with kdb.write_tx(self.engine, "paper") as conn:
                conn.execute(so.update().where((so.c.id == int(order_id)) & (so.c.status == "submitted")).values(status="cancelled", reject_reason="cancelled by request"))
        return self.order_status(order_id)

    def fill_open(self, date, open_prices: pd.Series) -> list[Order]:
        """Fill every working order decided before ``date`` at that day's open, in one transaction.

        Sells first (symbol order), then buys while cash lasts; ``open_prices`` (USD per share by
        symbol) without a finite positive price for an order's symbol rejects it (``no price``).
        Returns the orders filled or rejected. Idempotent: a second call finds nothing left.
        """
        from . import db as kdb

        t = _tables()
        so, sp, sa_, sf = t["sim_orders"], t["sim_positions"], t["sim_accounts"], t["sim_fills"]
        day = _day(date)
        cost, slip = self.cost_bps / 1e4, self.slippage_bps / 1e4
        done = []
        with kdb.write_tx(self.engine, "paper") as conn:
            work = conn.execute(
                so.select().where((so.c.account == self.account_name) & (so.c.status == "submitted") & (so.c.decided_on < day))
            ).mappings().all()
            if not work:
                return []
            cash = float(self._acct(conn)["cash"])
            pos = self._positions(conn)
            sells = sorted((r for r in work if r["side"] == "sell"), key=lambda r: (r["symbol"], r["id"]))
            buys = sorted((r for r in work if r["side"] == "buy"), key=lambda r: (r["symbol"], r["id"]))
            now = kdb.utc_now()
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

        from . import db as kdb

        t = _tables()
        sp, sa_ = t["sim_positions"], t["sim_accounts"]
        px = pd.Series(close, dtype="float64")
        px = px[np.isfinite(px.to_numpy()) & (px.to_numpy() > 0)]
        with kdb.write_tx(self.engine, "paper") as conn:
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
        from . import db as kdb

        t = _tables()
        with kdb.write_tx(self.engine, "paper") as conn:
            ids = _order_ids(conn, t["sim_orders"], self.account_name)
            if ids:
                conn.execute(t["sim_fills"].delete().where(t["sim_fills"].c.order_id.in_(ids)))
            for name in ("sim_orders", "sim_positions", "sim_accounts", "paper_runs", "paper_targets", "paper_checks", "paper_orders"):
                tab = t[name]
                conn.execute(tab.delete().where(tab.c.account == self.account_name))


def _order_ids(conn, table, account: str) -> list[int]:
    """Ids of ``table``'s rows for ``account``."""
    import sqlalchemy as sa

    return [r[0] for r in conn.execute(sa.select(table.c.id).where(table.c.account == account))]


# ================================================================================================
# the daily step
# ================================================================================================


def _crash_point(name: str) -> None:
    """Test hook: when ``$KIT_PAPER_CRASH_AT`` equals ``name``, the process dies here at once
    (``os._exit(137)``, as a SIGKILL would: no cleanup, no rollback handlers). Crash points in
    :func:`run_day`: ``after_fills``, ``after_journal``, ``after_first_submit``, ``after_submit``,
    ``before_done``."""
    import os

    if os.environ.get("KIT_PAPER_CRASH_AT") == name:
        os._exit(137)


class PaperError(RuntimeError):
    """The paper loop cannot run this day (the message says why and what to do)."""


class PaperLockedError(PaperError):
    """Another paper step for the same account is running (the lock file is held)."""


@dataclass
class PaperConfig:
    """Settings of the paper loop (the ``paper`` section of a params file).

    Attributes
    ----------
    account : account name in the database (several accounts can share one).
    scope : registry scope whose ``active`` model is traded.
    require_active : when False and the scope has no active model, the newest candidate is
        traded and every record says so (for replays and demonstrations only).
    data_path : bar store ('' = the committed store or ``$KIT_DATA``).
    symbols : list of symbols, or ``"all"``; n_symbols / universe_as_of: the n most liquid as of
        that date instead (0 = use ``symbols``).
    history_start : first date loaded (the streaming state warms up from it, as training did).
    target_vol : annualised volatility target per asset; max_gross : gross cap (fraction of equity).
    cost_bps, slippage_bps, initial_cash : simulated broker's commission, slippage and start cash
        (used when the account is created).
    limits : :class:`kit.risk.Limits` fields for the pre-trade check.
    state_dir : where the lock and the streaming state live ('' = ``data/state``).
    """

    account: str = "paper"
    scope: str = "universe"
    require_active: bool = True
    data_path: str = ""
    symbols: list | str = "all"
    n_symbols: int = 0
    universe_as_of: str = "2004-12-31"
    history_start: str = "1999-01-01"
    target_vol: float = 0.15
    max_gross: float = 0.95
    cost_bps: float = 5.0
    slippage_bps: float = 0.0
    initial_cash: float = 100_000.0
    limits: dict = None
    state_dir: str = ""

    @classmethod
    def from_dict(cls, d: dict | None) -> PaperConfig:
        """From a mapping; unknown keys raise ``ValueError`` naming them."""
        from dataclasses import fields as dc_fields

        d = dict(d or {})
        known = {f.name for f in dc_fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown paper settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def state_path(self):
        """The folder of the lock and the streaming state (``state_dir`` or ``data/state``)."""
        from pathlib import Path

        from .db import REPO_ROOT

        return Path(self.state_dir) if self.state_dir else REPO_ROOT / "data" / "state"


@dataclass
class DayResult:
    """What one daily step did.

    Attributes
    ----------
    as_of : the trading day (decisions at its close).
    status : ``done`` (ran now) or ``already_done`` (a second run of the day: nothing traded).
    model : the traded model's registry label (``None`` for ``already_done``).
    equity, cash : USD at the close, after the day's fills at the open.
    orders : DataFrame of the orders sent (symbol, side, qty, client_order_id, status, reason).
    fills : orders from earlier days filled or rejected at today's open.
    checks : pre-trade violations (symbol, check, value, limit, action).
    targets : DataFrame by symbol: position, ex_ante_vol, target_weight, accepted_weight, current_weight, close.
    info : dict (streaming check, ledger rows, fillback count, model status).
    """

    as_of: pd.Timestamp
    status: str
    model: str | None = None
    equity: float | None = None
    cash: float | None = None
    orders: pd.DataFrame = None
    fills: list = None
    checks: pd.DataFrame = None
    targets: pd.DataFrame = None
    info: dict = None


class _FileLock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise PaperLockedError(f"another paper step holds {self.path}; nothing done") from None
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False


def load_history(config: PaperConfig, end, source=None) -> pd.DataFrame:
    """Adjusted daily bars (tidy: symbol, date, open, high, low, close, ...) of the configured
    universe from ``config.history_start`` to ``end``, from ``source`` (a
    :class:`kit.brokers.BarSource`; default the Parquet store at ``config.data_path``).

    Raises
    ------
    PaperError
        No bars for the universe up to ``end``.
    """
    from . import data
    from .brokers import ParquetBarSource

    if source is None:
        source = ParquetBarSource(config.data_path or None)
    if config.n_symbols and config.n_symbols > 0:
        _, _, universe = data.load_universe(config.data_path or None, None, config.n_symbols, config.universe_as_of, config.history_start, end)
        symbols = list(universe)
    elif config.symbols == "all":
        symbols = None
    else:
        symbols = list(config.symbols)
    bars = source.bars(symbols if symbols is not None else data.read_prices(config.data_path or None)["symbol"].unique(), config.history_start, end)
    if bars.empty:
        raise PaperError(f"no bars for the universe between {config.history_start} and {end}")
    return data.adjust_prices(bars)


class FeatureWindow:
    """The streaming DMN feature state (:class:`kit.streaming.StreamingFeatures`) plus the last
    ``lookback`` feature rows of every symbol, the model's input window.

    Saved as two ``.npz`` files (``<stem>.state.npz``, ``<stem>.window.npz``) written atomically;
    a window whose date differs from the state's is discarded and rebuilt from history.
    """

    def __init__(self, lookback: int):
        from .streaming import StreamingFeatures

        self.lookback = int(lookback)
        self.sf = StreamingFeatures(("dmn",))
        self.buffer = None  # (L, N, F)
        self.dates: list = []

    @property
    def last_date(self):
        """Date of the last bar in the state (None before the first)."""
        return self.sf.last_date

    def rebuild(self, close: pd.DataFrame) -> None:
        """Warm up from history ``close`` ``(T, N)``: all but the last ``lookback`` dates in one pass,
        then the last ``lookback`` bar by bar into the window."""
        from .streaming import StreamingFeatures

        self.sf = StreamingFeatures(("dmn",))
        L = self.lookback
        head, tail = close.iloc[:-L], close.iloc[-L:]
        if len(head):
            self.sf.warm_up({"close": head})
        else:
            self.sf.add_symbols([str(c) for c in close.columns])
        self.buffer, self.dates = None, []
        for d, row in tail.iterrows():
            self.update(d, row)

    def update(self, date, close_row: pd.Series) -> None:
        """One bar: ``close_row`` (N,) adjusted closes by symbol (new symbols are added)."""
        out = self.sf.update(pd.DataFrame({"close": close_row.astype("float64")}), date=date, add_unknown=True)
        vals = out.to_numpy(dtype="float64")[None]
        if self.buffer is None:
            self.buffer = vals
        else:
            if self.buffer.shape[1] < vals.shape[1]:  # symbols added: pad the window's history with NaN
                pad = np.full((self.buffer.shape[0], vals.shape[1] - self.buffer.shape[1], vals.shape[2]), np.nan)
                self.buffer = np.concatenate([self.buffer, pad], axis=1)
            self.buffer = np.concatenate([self.buffer, vals])[-self.lookback :]
        self.dates = (self.dates + [pd.Timestamp(date)])[-self.lookback :]

    def window(self, symbols) -> np.ndarray:
        """``(N, L, F)`` float64 window for ``symbols`` (NaN where unknown), oldest step first."""
        idx = [self.sf.symbols.index(s) if s in self.sf.symbols else -1 for s in symbols]
        L, _, F = self.buffer.shape
        out = np.full((len(symbols), L, F), np.nan)
        for k, j in enumerate(idx):
            if j >= 0 and j < self.buffer.shape[1]:
                out[k] = self.buffer[:, j, :]
        return out

    def save(self, stem) -> None:
        """Write the state and the window atomically next to ``stem`` (two ``.npz`` files)."""
        from pathlib import Path

        from ._atomic import atomic_path

        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.sf.save(stem.with_suffix(".state.npz"))
        with atomic_path(stem.with_suffix(".window.npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, buffer=self.buffer, dates=np.array([d.isoformat() for d in self.dates]), symbols=np.array(self.sf.symbols), lookback=self.lookback)

    @classmethod
    def load(cls, stem, lookback: int):
        """The saved window, or None when missing, unreadable or inconsistent (then rebuild)."""
        from pathlib import Path

        from .streaming import StreamingFeatures

        stem = Path(stem)
        try:
            sf = StreamingFeatures.load(stem.with_suffix(".state.npz"))
            with np.load(stem.with_suffix(".window.npz"), allow_pickle=False) as z:
                buffer, dates, symbols, lb = z["buffer"], [pd.Timestamp(d) for d in z["dates"]], list(z["symbols"]), int(z["lookback"])
        except Exception:  # noqa: BLE001 - any unreadable state is rebuilt from history
            return None
        if lb != lookback or not dates or dates[-1] != sf.last_date or list(sf.symbols)[: len(symbols)] != symbols:
            return None
        fw = cls(lookback)
        fw.sf, fw.buffer, fw.dates = sf, buffer, dates
        return fw


def _position_model(model_row: dict, db):
    """(model, seq_len, feature_names) for a registered position model or ensemble."""
    from . import registry
    from .models import PositionEnsemble, build_model

    model, payload = registry.load_model(model_row["id"], db=db)
    extra = model_row.get("extra") or {}
    seq_len = int((extra.get("walk_forward_config") or {}).get("seq_len", 63))
    if model is None:  # an ensemble bundle
        members = []
        for p in payload["members"]:
            m = build_model(p["config"])
            m.load_state_dict(p["state_dict"])
            members.append(m.eval())
        weights = payload["weights"]
        w = np.array(list(weights.values()) if isinstance(weights, dict) else weights, dtype="float64")
        model = PositionEnsemble(members, w)
        names = payload["members"][0]["feature_names"]
    else:
        if model_row["name"] == "ldtm":
            raise PaperError("the paper loop trades position models (dmn_lstm, momentum_transformer, linear, mlp, ensemble), not the ldtm forecaster")
        names = payload["feature_names"]
    return model.eval(), seq_len, list(names)


def _pick_model(config: PaperConfig, db) -> tuple[dict, str]:
    from . import registry

    row = registry.active_model(config.scope, db=db)
    if row is not None:
        return row, "active"
    if config.require_active:
        raise PaperError(
            f"no active model in scope {config.scope!r}: train one (20_train registers candidates and applies the gate), "
            "or set require_active: false to trade the newest candidate for a demonstration"
        )
    cands = registry.list_models(scope=config.scope, status="candidate", db=db)
    if cands.empty:
        raise PaperError(f"no model at all in scope {config.scope!r}")
    newest = cands.sort_values("id").iloc[-1]
    return registry.get_model(int(newest["id"]), db=db), "candidate (not promoted by the gate)"


def run_day(as_of, config: PaperConfig | dict | None = None, *, broker=None, source=None, history: pd.DataFrame | None = None, db=None) -> DayResult:
    """The daily paper-trading step for the trading day ``as_of`` (decisions at its close).

    1. Take the account's lock (``state_dir/paper-<account>.lock``); a second concurrent step
       raises :class:`PaperLockedError`. A day already ``done`` returns ``already_done`` and
       trades nothing; a day before the last done day is refused.
    2. Load adjusted bars up to ``as_of`` (``history`` if given, else :func:`load_history`).
    3. The broker: a :class:`SimBroker` fills the orders of earlier days at today's open and
       marks today's close; orders of earlier runs still open in the loop's journal are
       reconciled with the broker by client order id (a crash between sending and recording
       leaves nothing lost).
    4. Update the streaming DMN feature state (rebuilt from history when missing or stale) and
       check it against the batch features (:func:`kit.features.feature_set`) at ``as_of``.
    5. Load the active model of ``config.scope`` from the registry and predict today's positions.
    6. Ledger: snapshot the predictions (a snapshot already taken for the day is kept as it is),
       then fill back every outcome whose date has passed.
    7. Target weights: :func:`kit.backtest.vol_scaled_weights` of the positions, then
       :func:`kit.risk.pre_trade_check` against the limits; targets and every violation are recorded.
    8. Orders: :func:`order_quantities` at today's close, each with a deterministic client order
       id (:func:`kit.brokers.client_order_id` of account, day, symbol, side and model), journaled
       then submitted; the broker refuses duplicates, so a rerun after a crash sends only what is
       missing.
    9. Mark the day ``done`` with equity and cash.

    Parameters
    ----------
    as_of : date-like trading day present in the data.
    config : :class:`PaperConfig` or dict.
    broker : a :class:`kit.brokers.Broker` (default a :class:`SimBroker` on ``db``).
    source : a :class:`kit.brokers.BarSource` (default the Parquet store).
    history : preloaded adjusted bars (tidy), e.g. by :func:`replay`; rows after ``as_of`` are ignored.
    db : database URL or Engine (default :func:`kit.db.default_url`).

    Returns
    -------
    :class:`DayResult`.

    Raises
    ------
    PaperLockedError, PaperError
        Locked; ``as_of`` is not a trading day of the data, is before the last done day, or has no
        tradable model.
    """
    import datetime as _dt

    import sqlalchemy as sa

    from . import backtest, brokers, data, features, ledger, risk
    from . import db as kdb

    config = config if isinstance(config, PaperConfig) else PaperConfig.from_dict(config)
    as_of = pd.Timestamp(as_of).normalize()
    engine = kdb.get_engine(db)
    t = _tables()
    runs, targets_t, checks_t, journal = t["paper_runs"], t["paper_targets"], t["paper_checks"], t["paper_orders"]
    acct = config.account
    state = config.state_path()
    with _FileLock(state / f"paper-{acct}.lock"):
        with kdb.read_tx(engine) as conn:
            row = conn.execute(runs.select().where((runs.c.account == acct) & (runs.c.as_of == as_of.date()))).mappings().first()
            last_done = conn.execute(sa.select(sa.func.max(runs.c.as_of)).where((runs.c.account == acct) & (runs.c.status == "done"))).scalar()
        if row is not None and row["status"] == "done":
            return DayResult(as_of, "already_done", row["model"], row["equity"], row["cash"], pd.DataFrame(), [], pd.DataFrame(), pd.DataFrame(), dict(row["info"] or {}))
        if last_done is not None and _day(last_done) > as_of.date():
            raise PaperError(f"as_of {as_of.date()} is before the last completed paper day {last_done} of account {acct!r}")

        # 2. data up to as_of
        bars = history if history is not None else load_history(config, as_of, source)
        bars = bars[bars["date"] <= as_of]
        frames = data.wide_fields(bars, ("open", "close"))
        close, open_ = frames["close"], frames["open"]
        if as_of not in close.index:
            raise PaperError(f"as_of {as_of.date()} is not a trading day in the data (last date {close.index[-1].date()})")
        close_row, open_row = close.loc[as_of], open_.loc[as_of]

        # 3. broker: fills at today's open, marks, journal reconciliation
        broker = broker if broker is not None else SimBroker(engine, acct, config.initial_cash, config.cost_bps, config.slippage_bps, risk.Limits.from_dict(config.limits))
        fills = []
        if isinstance(broker, SimBroker):
            fills = broker.fill_open(as_of, open_row)
            broker.mark(as_of, close_row)
        _crash_point("after_fills")
        with kdb.read_tx(engine) as conn:
            open_journal = conn.execute(journal.select().where((journal.c.account == acct) & journal.c.status.in_(brokers.OPEN_ORDER_STATUSES + ("new",)))).mappings().all()
        if open_journal:
            with kdb.write_tx(engine, "paper") as conn:
                for j in open_journal:
                    o = broker.get_order_by_client_id(j["client_order_id"])
                    status = o.status if o is not None else ("cancelled" if _day(j["as_of"]) < as_of.date() else j["status"])
                    conn.execute(journal.update().where((journal.c.account == acct) & (journal.c.client_order_id == j["client_order_id"])).values(
                        status=status, broker_order_id=o.id if o else None, filled_qty=o.filled_qty if o else None,
                        filled_avg_price=o.filled_avg_price if o else None, reject_reason=(o.reject_reason if o else "not found at the broker"), updated_at=kdb.utc_now()))
        with kdb.write_tx(engine, "paper") as conn:
            if row is None:
                conn.execute(runs.insert().values(account=acct, as_of=as_of.date(), status="started", broker=getattr(broker, "name", type(broker).__name__), started_at=kdb.utc_now()))

        # 4. streaming features
        model_row, model_status = _pick_model(config, engine)
        model, seq_len, feature_names = _position_model(model_row, engine)
        stem = state / f"paper-{acct}-features"
        fw = FeatureWindow.load(stem, seq_len)
        rebuilt = False
        prev = close.index[close.index < as_of]
        if fw is not None and fw.last_date is not None and len(prev) and fw.last_date == prev[-1]:
            fw.update(as_of, close_row)
        elif fw is not None and fw.last_date == as_of:
            pass  # a rerun of a day that crashed after the state was saved
        else:
            fw = FeatureWindow(seq_len)
            fw.rebuild(close)
            rebuilt = True
        batch = features.feature_set("dmn", close)
        symbols = [str(s) for s in close.columns]
        b_last = batch.values[-1]  # (N, F) at as_of
        win = fw.window(symbols)  # (N, L, F)
        order = [fw.sf.names.index(n) for n in feature_names]
        win = win[:, :, order]
        both = np.isfinite(b_last[:, order]) & np.isfinite(win[:, -1])
        stream_diff = float(np.max(np.abs(b_last[:, order][both] - win[:, -1][both]), initial=0.0))
        if stream_diff > 1e-8 or (np.isfinite(b_last[:, order]) != np.isfinite(win[:, -1])).any():
            fw = FeatureWindow(seq_len)
            fw.rebuild(close)
            rebuilt = True
            win = fw.window(symbols)[:, :, order]
        fw.save(stem)

        # 5. predict
        import torch

        ok = np.isfinite(win[:, -1]).all(axis=1)
        x = torch.from_numpy(np.nan_to_num(win, nan=0.0).astype(np.float32))
        with torch.no_grad():
            pos = model(x)[:, -1].numpy().astype("float64")
        pos = np.where(ok, np.clip(pos, -1.0, 1.0), np.nan)
        positions = pd.Series(pos, index=symbols)
        label = model_row["label"]

        # 6. ledger
        live = positions.dropna()
        preds = pd.DataFrame({"symbol": live.index, "run_date": as_of, "position": live.to_numpy()})
        try:
            written = len(ledger.snapshot(preds, close, model_row["id"], db=engine)) if len(preds) else 0
        except ledger.DuplicateSnapshotError:
            written = 0
        filled_back = ledger.fillback(close, db=engine).n_filled

        # 7. targets and the pre-trade check
        vol = features.ex_ante_vol(features.daily_returns(close)).loc[[as_of]]
        w = backtest.vol_scaled_weights(positions.to_frame().T.set_axis([as_of]), vol, config.target_vol, config.max_gross).iloc[0]
        account = broker.account()
        held = broker.positions()
        current_qty = pd.Series({s: p.qty for s, p in held.items()}, dtype="float64")
        current_w = pd.Series({s: p.market_value / account.equity for s, p in held.items()}, dtype="float64")
        limits = risk.Limits.from_dict(config.limits)
        check = risk.pre_trade_check(w, close_row.dropna(), limits, current_w, account.equity)
        accepted = check.accepted
        tgt = pd.DataFrame({
            "position": positions.reindex(accepted.index), "ex_ante_vol": vol.iloc[0].reindex(accepted.index),
            "target_weight": w.reindex(accepted.index).fillna(0.0), "accepted_weight": accepted,
            "current_weight": check.current.reindex(accepted.index).fillna(0.0), "close": close_row.reindex(accepted.index),
        })
        with kdb.write_tx(engine, "paper") as conn:
            conn.execute(targets_t.delete().where((targets_t.c.account == acct) & (targets_t.c.as_of == as_of.date())))
            conn.execute(checks_t.delete().where((checks_t.c.account == acct) & (checks_t.c.as_of == as_of.date())))
            if len(tgt):
                conn.execute(targets_t.insert(), [
                    {"account": acct, "as_of": as_of.date(), "symbol": s, **{k: (None if pd.isna(v) else float(v)) for k, v in r.items()}}
                    for s, r in tgt.iterrows()
                ])
            if len(check.violations):
                conn.execute(checks_t.insert(), [
                    {"account": acct, "as_of": as_of.date(), "symbol": str(v["symbol"]), "check": v["check"],
                     "value": None if pd.isna(v["value"]) else float(v["value"]), "limit": None if pd.isna(v["limit"]) else float(v["limit"]), "action": v["action"]}
                    for _, v in check.violations.iterrows()
                ])

        # 8. orders
        # symbols without a close today cannot be sized: they keep their holdings (as next_open_reference)
        tradable = close_row[np.isfinite(close_row.to_numpy()) & (close_row.to_numpy() > 0)]
        oq = order_quantities(accepted.reindex(tradable.index.intersection(accepted.index)), current_qty.reindex(tradable.index.intersection(current_qty.index)), tradable, account.equity)
        reqs = [brokers.OrderRequest(sym, o["side"], float(o["qty"]), brokers.client_order_id(acct, as_of.date().isoformat(), sym, o["side"], label))
                for sym, o in oq.iterrows()]
        if reqs:  # journal first (one transaction), so a crash after sending leaves a record to reconcile
            with kdb.write_tx(engine, "paper") as conn:
                known = {r[0] for r in conn.execute(sa.select(journal.c.client_order_id).where(
                    (journal.c.account == acct) & journal.c.client_order_id.in_([q.client_order_id for q in reqs])))}
                fresh = [q for q in reqs if q.client_order_id not in known]
                if fresh:
                    conn.execute(journal.insert(), [
                        {"account": acct, "client_order_id": q.client_order_id, "as_of": as_of.date(), "symbol": q.symbol, "side": q.side,
                         "qty": q.qty, "status": "new", "updated_at": kdb.utc_now()} for q in fresh
                    ])
        _crash_point("after_journal")
        placed = []
        for k, q in enumerate(reqs):
            placed.append(broker.submit(q, decided_on=as_of.date()) if isinstance(broker, SimBroker) else broker.submit(q))
            if k == 0:
                _crash_point("after_first_submit")
        _crash_point("after_submit")
        if placed:
            with kdb.write_tx(engine, "paper") as conn:
                for q, o in zip(reqs, placed, strict=True):
                    conn.execute(journal.update().where((journal.c.account == acct) & (journal.c.client_order_id == q.client_order_id)).values(
                        status=o.status, broker_order_id=o.id, filled_qty=o.filled_qty, filled_avg_price=o.filled_avg_price,
                        reject_reason=o.reject_reason, updated_at=kdb.utc_now()))
        sent = [{"symbol": q.symbol, "side": q.side, "qty": q.qty, "client_order_id": q.client_order_id, "status": o.status, "reason": o.reject_reason}
                for q, o in zip(reqs, placed, strict=True)]

        # 9. done
        _crash_point("before_done")
        info = {
            "model_id": int(model_row["id"]), "model_status": model_status, "streaming_max_abs_diff": stream_diff, "streaming_rebuilt": rebuilt,
            "ledger_rows": written, "filled_back": filled_back, "within_limits": bool(check.within_limits), "n_symbols": len(symbols),
            "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        with kdb.write_tx(engine, "paper") as conn:
            conn.execute(runs.update().where((runs.c.account == acct) & (runs.c.as_of == as_of.date())).values(
                status="done", model=label, equity=account.equity, cash=account.cash, n_orders=len(sent), finished_at=kdb.utc_now(), info=info))
        return DayResult(as_of, "done", label, account.equity, account.cash, pd.DataFrame(sent), fills, check.violations, tgt, info)


# ================================================================================================
# replay
# ================================================================================================


@dataclass
class ReplayResult:
    """A day-by-day replay of the paper loop over history and the reference backtest beside it.

    Attributes
    ----------
    days : DataFrame by day: status, equity, cash, n_orders.
    weights : (T, N) accepted target weights the loop recorded.
    reference : :class:`NextOpenResult` of :func:`next_open_reference` on those weights.
    max_rel_diff : largest ``|paper equity / reference equity - 1|`` over the days.
    model : label of the model traded; model_status : ``active`` or ``candidate (...)``.
    """

    days: pd.DataFrame
    weights: pd.DataFrame
    reference: NextOpenResult
    max_rel_diff: float
    model: str
    model_status: str


def paper_history(account: str = "paper", *, db=None) -> dict:
    """The loop's records for ``account``: ``runs``, ``targets``, ``checks``, ``orders`` (journal)
    as DataFrames (empty when none)."""
    from . import db as kdb

    engine = kdb.get_engine(db)
    t = _tables()
    out = {}
    with kdb.read_tx(engine) as conn:
        for key, name in (("runs", "paper_runs"), ("targets", "paper_targets"), ("checks", "paper_checks"), ("orders", "paper_orders")):
            tab = t[name]
            out[key] = pd.DataFrame(conn.execute(tab.select().where(tab.c.account == account)).mappings().all(), columns=[c.name for c in tab.columns])
    return out


def replay(start, end, config: PaperConfig | dict | None = None, *, db=None, source=None, progress: bool = False) -> ReplayResult:
    """Step the paper loop day by day over the trading days ``[start, end]`` of the data, as if
    live (a :class:`SimBroker` account, the registry's model, the ledger, the pre-trade check), then
    run :func:`next_open_reference` on the weights it recorded: the two equity curves must agree
    to float rounding (``max_rel_diff``; tested below 1e-9).

    The account must be new or have stopped before ``start`` (use a fresh ``account`` name or
    :meth:`SimBroker.reset`). Days already done are skipped, so an interrupted replay resumes.

    Raises
    ------
    PaperError
        No trading day in the window; as :func:`run_day`.
    """
    from . import data

    config = config if isinstance(config, PaperConfig) else PaperConfig.from_dict(config)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    history = load_history(config, end, source)
    frames = data.wide_fields(history, ("open", "close"))
    close, open_ = frames["close"], frames["open"]
    days = close.index[(close.index >= start) & (close.index <= end)]
    if len(days) == 0:
        raise PaperError(f"no trading day between {start.date()} and {end.date()} in the data")
    from . import db as kdb
    from . import risk

    engine = kdb.get_engine(db)
    broker = SimBroker(engine, config.account, config.initial_cash, config.cost_bps, config.slippage_bps, risk.Limits.from_dict(config.limits))
    iterator = days
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(days, desc="paper replay")
    last = None
    for d in iterator:
        last = run_day(d, config, broker=broker, history=history, db=engine)
    rec = paper_history(config.account, db=engine)
    runs = rec["runs"]
    runs = runs[(pd.to_datetime(runs["as_of"]) >= start) & (pd.to_datetime(runs["as_of"]) <= end)].copy()
    runs["as_of"] = pd.to_datetime(runs["as_of"])
    runs = runs.set_index("as_of").sort_index()
    tg = rec["targets"]
    tg["as_of"] = pd.to_datetime(tg["as_of"])
    weights = tg.pivot(index="as_of", columns="symbol", values="accepted_weight").reindex(index=days, columns=close.columns)
    ref = next_open_reference(close.loc[days], open_.loc[days], weights, broker.cost_bps, broker.slippage_bps, broker.initial_cash)
    paper_eq = runs["equity"].reindex(days)
    rel = (paper_eq / ref.equity - 1.0).abs()
    info = (last.info or {}) if last is not None else {}
    return ReplayResult(
        days=runs[["status", "equity", "cash", "n_orders"]], weights=weights, reference=ref, max_rel_diff=float(rel.max()),
        model=str(runs["model"].dropna().iloc[-1]) if runs["model"].notna().any() else "", model_status=str(info.get("model_status", "")),
    )


def prepare_model(config: PaperConfig | dict, train_until, *, db=None, source=None, model: str = "dmn_lstm", test_years: int = 2,
                  hidden_size: int = 10, epochs: int = 5, seed: int = 0, gate: dict | None = None, checkpoint_dir=None) -> dict:
    """Train ``model`` walk-forward on the configured universe with data up to ``train_until``
    only (``test_years`` yearly out-of-sample folds just before it), register it as a candidate in
    ``config.scope`` and apply the promotion gate. For replays: the model never sees the replayed
    window. Returns the registry row (its ``status`` says whether the gate promoted it) and the
    gate's failed criteria in ``row["gate_reasons"]``.
    """
    import tempfile
    from pathlib import Path

    from . import data, registry, training

    config = config if isinstance(config, PaperConfig) else PaperConfig.from_dict(config)
    until = pd.Timestamp(train_until)
    hist = load_history(config, until, source)
    close = data.to_wide(hist, "close")
    close = close[close.index <= until]
    test_start = close.index[-1] - pd.DateOffset(years=test_years)
    tmp = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="kit-paper-model-"))
    wf = training.walk_forward(
        close, model=model, test_start=test_start, test_size=252, hidden_size=hidden_size,
        train=training.TrainConfig(epochs=epochs, patience=max(2, epochs // 2), seed=seed), checkpoint_dir=tmp, progress=False,
        data_sha256=data.data_sha256(config.data_path or None),
    )
    mid = registry.register_walk_forward(wf, close, config.scope, db=db)
    decision = registry.apply_gate(mid, gate, db=db)
    row = registry.get_model(mid, db=db)
    row["gate_reasons"] = decision.reasons
    return row
