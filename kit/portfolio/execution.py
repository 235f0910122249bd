"""The next-open execution model of paper trading: order sizing and its reference backtest.

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
weights; the paper loop (:mod:`kit.live.daily` with :class:`kit.live.sim.SimBroker`) must reproduce it to float
rounding when replayed over the same weights, and vectorbt reproduces its fills and costs
(:func:`next_open_vectorbt`; tests in ``tests/test_paper.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["order_quantities", "NextOpenResult", "next_open_reference", "next_open_vectorbt"]



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

