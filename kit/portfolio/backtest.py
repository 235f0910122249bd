"""The backtest: weights to a vectorbt portfolio with costs and slippage, and its numpy reference.

Timing convention: a position decided at the close of day t (from data up to t) is held from the
close of t to the close of t+1 and earns ``r_{t+1}``. vectorbt fills an order placed at row t at
row t's close, which is exactly that.

Costs and slippage: ``cost_bps`` is charged on the traded notional valued at the fill price;
``slippage_bps`` moves the fill price against the trade (buys at ``close * (1 + s)``, sells at
``close * (1 - s)``), as vectorbt's ``fees`` and ``slippage`` arguments do.

Leverage: the kit does not borrow. vectorbt (with ``lock_cash=False``, its default) lets short
sales fund purchases but limits every purchase to the cash available, so a book whose net
exposure (sum of signed weights) plus costs exceeds 100% of equity is silently clipped and no
longer holds its target. :func:`vol_scaled_weights` caps gross exposure at ``max_gross`` (0.95 by
default, which bounds net exposure and leaves room for costs) and :func:`simulate` refuses
weights whose net exposure exceeds 1. :func:`reference_returns` has no such limit (negative cash
is borrowing at zero interest), so above the cap the two differ (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..conventions import COST_SWEEP_BPS, TARGET_VOL
from .sizing import _check_labels, portfolio_vol_scaled_weights, vol_scaled_weights

__all__ = ["BacktestResult", "simulate", "compare_strategies", "cost_sweep", "reference_returns", "INIT_CASH"]



INIT_CASH = 1e6



@dataclass
class BacktestResult:
    """A simulated strategy: the vectorbt portfolio, its daily net returns ``(T,)`` and the target
    weights ``(T, N)`` it was asked to hold."""

    name: str
    portfolio: object
    returns: pd.Series
    weights: pd.DataFrame
    cost_bps: float
    slippage_bps: float = 0.0

    @property
    def equity(self) -> pd.Series:
        """Equity curve starting at 1.0."""
        return (1.0 + self.returns).cumprod()



def _check_costs(cost_bps: float, slippage_bps: float) -> None:
    if not cost_bps >= 0:
        raise ValueError(f"cost_bps must be >= 0, got {cost_bps}")
    if not slippage_bps >= 0:
        raise ValueError(f"slippage_bps must be >= 0, got {slippage_bps}")



def _check_weights(close: pd.DataFrame, weights: pd.DataFrame) -> np.ndarray:
    """Validated ``(T, N)`` float64 weights (see :func:`simulate` for the rules)."""
    w = weights.to_numpy(dtype="float64")
    if np.isinf(w).any():
        t, i = np.argwhere(np.isinf(w))[0]
        raise ValueError(f"weights: infinite weight {w[t, i]} for {close.columns[i]} on {close.index[t].date()}")
    nan = np.isnan(w)
    partial = nan.any(axis=1) & ~nan.all(axis=1)
    if partial.any():
        t = int(np.argmax(partial))
        i = int(np.argmax(nan[t]))
        raise ValueError(
            f"weights: NaN weight for {close.columns[i]} on {close.index[t].date()} in a row with finite weights; a day is "
            "either rebalanced (every weight finite, 0 for symbols not held) or not (the whole row NaN)"
        )
    no_price = close.isna().to_numpy() & ~nan & (w != 0)
    if no_price.any():
        t, i = np.argwhere(no_price)[0]
        raise ValueError(f"weights: non-zero weight {weights.iat[t, i]} for {close.columns[i]} on {close.index[t].date()} where close is NaN")
    net = np.where(nan, 0.0, w).sum(axis=1)
    if (net > 1.0 + 1e-12).any():
        t = int(np.argmax(net > 1.0 + 1e-12))
        raise ValueError(
            f"weights: net exposure {net[t]:.6f} > 1 on {close.index[t].date()}; the kit does not borrow and vectorbt would "
            "clip the purchases to the cash available (cap gross exposure with vol_scaled_weights(max_gross=...))"
        )
    return w



def simulate(
    close: pd.DataFrame,
    weights: pd.DataFrame,
    cost_bps: float = 0.0,
    name: str = "strategy",
    slippage_bps: float = 0.0,
) -> BacktestResult:
    """Simulate target weights with vectorbt (``Portfolio.from_orders``, target-percent sizing,
    cash shared across assets, sells before buys each day, costs as a fraction of traded notional).

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes (string column labels).
    weights : (T, N) DataFrame of target weights decided at each close (fractions of equity). A
        row of NaN means no rebalance that day: every position is held and its weight drifts
        with prices (e.g. weekly rebalancing); a row is either all finite or all NaN.
    cost_bps : cost per unit of traded notional in basis points (``fees = cost_bps / 1e4``).
    slippage_bps : adverse fill-price move in basis points (``slippage = slippage_bps / 1e4``):
        buys fill at ``close * (1 + s)``, sells at ``close * (1 - s)``; ``cost_bps`` applies to
        the notional at the fill price. Default 0.

    Gaps in ``close`` are forward-filled for valuation only (a held position keeps its last price
    through a missing day); before a symbol's first price the weight must be 0 and the price is
    back-filled so the simulator has a number (no position is held, so it has no effect).
    The net exposure ``sum_i w_{t,i}`` may not exceed 1 (the kit does not borrow; see the module
    notes and :func:`vol_scaled_weights`).

    Raises
    ------
    ValueError
        Negative ``cost_bps`` or ``slippage_bps``, mismatched labels, non-zero weight where no
        price exists, an infinite weight or a NaN in a row with finite weights, or a net
        exposure above 1.
    """
    import vectorbt as vbt

    _check_costs(cost_bps, slippage_bps)
    _check_labels(close, weights)
    w = _check_weights(close, weights)
    px = close.ffill().bfill()
    px.columns = [str(c) for c in px.columns]
    pf = vbt.Portfolio.from_orders(
        px,
        size=w,
        size_type="targetpercent",
        direction="both",
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
        fees=cost_bps / 1e4,
        slippage=slippage_bps / 1e4,
        init_cash=INIT_CASH,
        freq="1D",
    )
    rets = pd.Series(_returns_from_fills(pf.order_records, px.to_numpy(dtype="float64"), INIT_CASH), index=close.index, name=name)
    return BacktestResult(name, pf, rets, weights, cost_bps, slippage_bps)



def _returns_from_fills(orders: np.ndarray, px: np.ndarray, init_cash: float) -> np.ndarray:
    """Daily returns of a cash-sharing vectorbt portfolio from its order records, the same
    bookkeeping as ``Portfolio.returns()`` (cash plus shares at the close, over the previous
    day's value; tested equal to 1e-12) without its per-column intermediate frames, which cost
    more than the simulation itself on the full universe. ``orders``: vectorbt ``order_dt``
    records (at most one per day and symbol, as ``from_orders`` makes); ``px`` ``(T, N)``."""
    T, N = px.shape
    buy = orders["side"] == 0
    notional = orders["size"] * orders["price"]
    cash_flow = np.where(buy, -notional, notional) - orders["fees"]
    cash = init_cash + np.cumsum(np.bincount(orders["idx"], weights=cash_flow, minlength=T))
    delta = np.zeros((T, N))
    delta[orders["idx"], orders["col"]] = np.where(buy, orders["size"], -orders["size"])
    shares = np.cumsum(delta, axis=0)
    value = cash + np.where(shares != 0, shares * px, 0.0).sum(axis=1)
    prev = np.concatenate(([init_cash], value[:-1]))
    return value / prev - 1.0



def compare_strategies(
    close: pd.DataFrame,
    positions: dict[str, pd.DataFrame],
    ex_ante_vol: pd.DataFrame,
    cost_bps: float = 0.0,
    target_vol: float = TARGET_VOL,
    max_gross: float = 0.95,
    slippage_bps: float = 0.0,
    portfolio_target_vol: float | None = None,
    membership: pd.DataFrame | None = None,
) -> dict[str, BacktestResult]:
    """Simulate several position sets on the same dates, symbols, volatility targeting and costs.

    Parameters
    ----------
    close : (T, N) adjusted closes covering every position frame's dates.
    positions : name -> (T_s, N) positions in [-1, 1]; each is simulated on its own dates.
    ex_ante_vol : (T, N) annualised ex-ante volatility (e.g. :func:`kit.features.indicators.ex_ante_vol`).
    cost_bps, slippage_bps : see :func:`simulate`.
    target_vol, max_gross : see :func:`vol_scaled_weights`.
    portfolio_target_vol : if given, the weights are also scaled to this annualised book
        volatility with :func:`portfolio_vol_scaled_weights` (past data only); default None.
    membership : optional (T, N) bool point-in-time index membership: every strategy's position
        (models and benchmarks alike) is NaN (not live, weight 0) where the symbol is not a member
        on the decision date (dates or symbols it does not cover count as not members).

    Returns
    -------
    dict name -> :class:`BacktestResult`, in the input order.
    """
    out = {}
    for name, pos in positions.items():
        if membership is not None:
            live = pd.DataFrame(membership).reindex(index=pos.index, columns=pos.columns, fill_value=False).fillna(False)
            pos = pos.where(live.astype(bool))
        px = close.reindex(index=pos.index, columns=pos.columns)
        weights = vol_scaled_weights(pos, ex_ante_vol.reindex(index=pos.index, columns=pos.columns), target_vol, max_gross)
        if portfolio_target_vol is not None:
            weights = portfolio_vol_scaled_weights(weights, px, portfolio_target_vol, max_gross=max_gross)
        out[name] = simulate(px, weights, cost_bps, name, slippage_bps=slippage_bps)
    return out



def cost_sweep(
    close: pd.DataFrame, weights: pd.DataFrame, costs=COST_SWEEP_BPS, slippage_bps: float = 0.0
) -> pd.DataFrame:
    """Daily net returns of the same weights at several cost levels (vectorbt, :func:`simulate`).

    Parameters
    ----------
    close, weights : (T, N), as for :func:`simulate`.
    costs : cost levels in basis points of traded notional (default 0, 1, 2, 5, 10, 20).
    slippage_bps : the same slippage at every level (default 0).

    Returns
    -------
    (T, len(costs)) DataFrame of daily returns, one column per cost level (column index named
    ``cost_bps``). ``kit.analytics.performance_table(sweep.to_dict("series"))`` gives the table.
    """
    costs = [float(c) for c in costs]
    if not costs:
        raise ValueError("costs must hold at least one level")
    out = {c: simulate(close, weights, c, f"{c:g} bps", slippage_bps=slippage_bps).returns for c in costs}
    frame = pd.DataFrame(out, index=close.index)
    frame.columns.name = "cost_bps"
    return frame



def reference_returns(
    close: pd.DataFrame, weights: pd.DataFrame, cost_bps: float = 0.0, slippage_bps: float = 0.0
) -> pd.Series:
    """Plain-numpy daily net returns of target weights, for cross-checking :func:`simulate`.

    At each close t the book is valued at ``V_t = cash + sum_i shares_i * p_{i,t}``, every asset is
    traded to ``shares_i = w_{i,t} * V_t / p_{i,t}`` (so weights drift with prices between
    rebalances and are restored at each close), filled at ``q_{i,t} = p_{i,t} (1 + s sign(d_i))``
    for the traded shares ``d_i`` (``s = slippage_bps / 1e4``), and the cost
    ``cost_bps / 1e4 * sum_i |d_i| q_{i,t}`` is paid from cash. The return of day t is
    ``V_t^after / V_{t-1}^after - 1`` with ``V_{-1} = 1``. A row of NaN weights is a day without
    rebalance (shares held, the weights drift). Prices are forward-filled through gaps
    (then back-filled before a listing), as in :func:`simulate`. Cash may go negative (borrowing
    at zero interest), which vectorbt does not allow: above a net exposure of about
    ``1 - costs`` the two differ.

    Shapes: ``close`` and ``weights`` ``(T, N)``; returns ``(T,)``.
    """
    _check_costs(cost_bps, slippage_bps)
    out, _ = _reference_path(close, weights, cost_bps / 1e4, slippage_bps / 1e4)
    return pd.Series(out, index=close.index, name="reference")



def _reference_path(close: pd.DataFrame, weights: pd.DataFrame, fee: float, slip: float) -> tuple[np.ndarray, np.ndarray]:
    """``(T,)`` daily returns and ``(T,)`` cash as a fraction of equity after each close's trades
    (negative = borrowing, which vectorbt would not do) of :func:`reference_returns`."""
    px = close.ffill().bfill().to_numpy(dtype="float64")
    px = np.where(np.isfinite(px), px, 1.0)  # a symbol without any price carries no weight
    w = weights.to_numpy(dtype="float64")
    hold = np.isnan(w).all(axis=1)
    shares = np.zeros(px.shape[1])
    cash, prev_value = 1.0, 1.0
    out = np.empty(len(px))
    cash_frac = np.empty(len(px))
    for t in range(len(px)):
        p = px[t]
        if not hold[t]:  # else no rebalance: shares held, the weights drift
            value = cash + shares @ p
            target = w[t] * value / p
            d = target - shares
            q = p * (1.0 + slip * np.sign(d))
            cash -= d @ q + fee * (np.abs(d) @ q)
            shares = target
        after = cash + shares @ p
        out[t] = after / prev_value - 1.0
        cash_frac[t] = cash / after
        prev_value = after
    return out, cash_frac

