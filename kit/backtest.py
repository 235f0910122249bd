"""Positions to portfolios: volatility targeting, equal-risk aggregation, costs, benchmarks.

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

__all__ = [
    "vol_scaled_weights",
    "portfolio_vol_scaled_weights",
    "long_only_positions",
    "tsmom_positions",
    "macd_positions",
    "simulate",
    "BacktestResult",
    "turnover",
    "compare_strategies",
    "benchmark_positions",
    "cost_sweep",
    "reference_returns",
    "COST_SWEEP_BPS",
    "MACD_PAIRS",
]

COST_SWEEP_BPS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)
"""Cost levels (basis points of traded notional) of :func:`cost_sweep`."""

MACD_PAIRS = ((8, 24), (16, 48), (32, 96))
"""(short, long) time scales of the combined MACD signal (Baz et al., 2015; Lim et al., 2019)."""

INIT_CASH = 1e6
"""Starting equity of the vectorbt simulation. Returns do not depend on it, but vectorbt treats
share counts within 1e-12 of each other as equal; with an equity of 1.0 and prices in the
hundreds, positions are ~1e-5 shares and that tolerance swallows small rebalancing trades (an
error of ~1e-6 a day on the full universe). With 1e6 the simulation matches the numpy reference
to ~1e-15."""


def vol_scaled_weights(
    positions: pd.DataFrame, ex_ante_vol: pd.DataFrame, target_vol: float = 0.15, max_gross: float = 0.95
) -> pd.DataFrame:
    """Portfolio weights from positions: per-asset volatility targeting and equal-risk averaging.

    ``w_{t,i} = X_{t,i} * target_vol / ex_ante_vol_{t,i} / N_t`` where ``N_t`` is the number of
    assets live at t (finite position and positive volatility): the portfolio return is the average
    of the live assets' captured returns, as in Lim et al. (2019), eq. 1. Averaging over the live
    count (not over all N symbols of the panel) keeps each asset's risk budget at ``1 / N_t`` of
    the book whatever the number of listed symbols: when symbols enter, every weight shrinks; when
    they leave (or are not yet listed), the others grow. Assets that are not live get weight 0.
    When the gross exposure ``sum_i |w_{t,i}|`` exceeds ``max_gross`` (a fraction of equity), all
    weights of that day are scaled down by the same factor so it equals ``max_gross``.
    The kit does not borrow: vectorbt limits purchases to the available cash net of fees, so a
    book near 100% net exposure would be silently clipped and deviate from its target.
    The default cap of 0.95 leaves room for costs; below it, :func:`simulate` equals
    :func:`reference_returns` to about 1e-15 (tested).

    Parameters
    ----------
    positions : (T, N) DataFrame of positions in [-1, 1]; NaN = not live.
    ex_ante_vol : (T, N) DataFrame of annualised ex-ante volatility (same labels).
    target_vol : annualised target volatility per asset (default 0.15).
    max_gross : cap on gross exposure, fraction of equity (default 0.95).

    Returns
    -------
    (T, N) DataFrame of weights (fractions of equity), no NaN.

    Raises
    ------
    ValueError
        Labels differ, ``target_vol`` or ``max_gross`` not positive, or a position outside [-1, 1].
    """
    if target_vol <= 0:
        raise ValueError(f"target_vol must be > 0, got {target_vol}")
    if max_gross <= 0:
        raise ValueError(f"max_gross must be > 0, got {max_gross}")
    vol = ex_ante_vol.reindex(index=positions.index, columns=positions.columns)
    pos = positions.to_numpy(dtype="float64")
    if np.nanmax(np.abs(pos), initial=0.0) > 1 + 1e-9:
        raise ValueError(f"positions must lie in [-1, 1]; max |position| = {np.nanmax(np.abs(pos))}")
    v = vol.to_numpy(dtype="float64")
    live = np.isfinite(pos) & np.isfinite(v) & (v > 0)
    n_live = live.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(live, pos * target_vol / np.where(live, v, 1.0), 0.0) / np.maximum(n_live, 1)
    return pd.DataFrame(_cap_gross(w, max_gross), index=positions.index, columns=positions.columns)


def _cap_gross(w: np.ndarray, max_gross: float) -> np.ndarray:
    gross = np.abs(w).sum(axis=1, keepdims=True)
    scale = np.where(gross > max_gross, max_gross / np.where(gross > 0, gross, 1.0), 1.0)
    return w * scale


def portfolio_vol_scaled_weights(
    weights: pd.DataFrame,
    close: pd.DataFrame,
    portfolio_target_vol: float = 0.15,
    span: int = 60,
    min_periods: int = 20,
    max_gross: float = 0.95,
) -> pd.DataFrame:
    """Portfolio-level volatility targeting on top of per-asset weights, with past data only.

    The book's daily return as if held at the given weights, ``p_t = sum_i w_{t-1,i} r_{t,i}``
    (``r`` the assets' simple close-to-close returns; a missing return counts 0), gives the
    ex-ante volatility ``sigma_t`` (EWM std, span ``span``, annualised, as
    :func:`kit.features.ex_ante_vol`) from ``p_1 .. p_t`` only, all known at the close of t. The
    weights decided at t are multiplied by ``portfolio_target_vol / sigma_t`` and the gross cap
    ``max_gross`` is applied again (so a diversified book whose volatility is below target can
    be scaled up only to the cap: the kit does not borrow). Until ``min_periods`` returns exist,
    or where ``sigma_t`` is 0, the weights are left unscaled.

    Parameters
    ----------
    weights : (T, N) weights, e.g. from :func:`vol_scaled_weights`.
    close : (T, N) adjusted closes, same labels.
    portfolio_target_vol : annualised target for the book (default 0.15).
    span, min_periods : of the EWM volatility estimate (default 60 and 20 days).
    max_gross : gross exposure cap after scaling, fraction of equity (default 0.95).

    Returns
    -------
    (T, N) DataFrame of weights.

    Raises
    ------
    ValueError
        ``portfolio_target_vol`` or ``max_gross`` not positive, or mismatched labels.
    """
    from kit import features

    if not portfolio_target_vol > 0:
        raise ValueError(f"portfolio_target_vol must be > 0, got {portfolio_target_vol}")
    if max_gross <= 0:
        raise ValueError(f"max_gross must be > 0, got {max_gross}")
    _check_labels(close, weights)
    w = weights.to_numpy(dtype="float64")
    r = features.daily_returns(close).to_numpy(dtype="float64")
    p = np.full(len(w), np.nan)
    p[1:] = np.nansum(w[:-1] * np.where(np.isfinite(r[1:]), r[1:], 0.0), axis=1)
    sigma = features.ex_ante_vol(pd.DataFrame(p[:, None]), span=span, min_periods=min_periods).to_numpy()[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(np.isfinite(sigma) & (sigma > 0), portfolio_target_vol / sigma, 1.0)
    return pd.DataFrame(_cap_gross(w * scale[:, None], max_gross), index=weights.index, columns=weights.columns)


def long_only_positions(close: pd.DataFrame) -> pd.DataFrame:
    """Long-only benchmark: position +1 wherever a price exists, NaN elsewhere."""
    return close.notna().astype("float64").where(close.notna())


def tsmom_positions(close: pd.DataFrame, lookback: int = 252) -> pd.DataFrame:
    """Time-series momentum of Moskowitz, Ooi & Pedersen (2012): the sign of the past
    ``lookback``-day (12-month) return, ``sign(close_t / close_{t-lookback} - 1)``; NaN until
    ``lookback`` days of history exist."""
    return np.sign(close / close.shift(lookback) - 1.0)


def macd_positions(
    close: pd.DataFrame, pairs=MACD_PAIRS, price_window: int = 63, signal_window: int = 252
) -> pd.DataFrame:
    """Combined MACD trend signal of Baz et al. (2015), the DMN paper's MACD benchmark.

    ``X_t = (1/K) sum_k phi(Y_t(S_k, L_k))`` with ``phi(y) = y exp(-y^2 / 4) / 0.89`` over the
    ``K`` time-scale pairs ``(S_k, L_k)`` (default (8, 24), (16, 48), (32, 96)), where ``Y_t`` is
    the normalised MACD of :func:`kit.features.macd_signal` (Lim, Zohren & Roberts, 2019, eq.
    10-12). ``|phi| <= sqrt(2) exp(-1/2) / 0.89 ~ 0.964``, so positions lie in [-1, 1].

    Parameters
    ----------
    close : (T, N) adjusted closes.
    pairs : (short, long) time scales in days.
    price_window, signal_window : rolling windows of the two normalisations (63 and 252 days).

    Returns
    -------
    (T, N) DataFrame of positions; NaN until every pair's indicator exists
    (``price_window + signal_window - 1`` valid prices).
    """
    from kit import features

    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs must name at least one (short, long) pair")
    total = None
    for short, long in pairs:
        y = features.macd_signal(close, short, long, price_window, signal_window)
        phi = y * np.exp(-(y**2) / 4.0) / 0.89
        total = phi if total is None else total + phi
    return total / len(pairs)


def turnover(weights: pd.DataFrame) -> pd.Series:
    """Daily turnover of target weights: ``sum_i |w_{t,i} - w_{t-1,i}|`` (first day from zero).
    A NaN weight (no rebalance) keeps the previous target, as in :func:`simulate`."""
    held = weights.ffill().fillna(0.0)
    change = held.diff()
    change.iloc[:1] = held.iloc[:1]
    return change.abs().sum(axis=1)


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


def _check_labels(close: pd.DataFrame, weights: pd.DataFrame) -> None:
    if not (weights.index.equals(close.index) and list(weights.columns) == list(close.columns)):
        raise ValueError("weights and close must have the same dates and symbols")


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
    target_vol: float = 0.15,
    max_gross: float = 0.95,
    slippage_bps: float = 0.0,
    portfolio_target_vol: float | None = None,
) -> dict[str, BacktestResult]:
    """Simulate several position sets on the same dates, symbols, volatility targeting and costs.

    Parameters
    ----------
    close : (T, N) adjusted closes covering every position frame's dates.
    positions : name -> (T_s, N) positions in [-1, 1]; each is simulated on its own dates.
    ex_ante_vol : (T, N) annualised ex-ante volatility (e.g. :func:`kit.features.ex_ante_vol`).
    cost_bps, slippage_bps : see :func:`simulate`.
    target_vol, max_gross : see :func:`vol_scaled_weights`.
    portfolio_target_vol : if given, the weights are also scaled to this annualised book
        volatility with :func:`portfolio_vol_scaled_weights` (past data only); default None.

    Returns
    -------
    dict name -> :class:`BacktestResult`, in the input order.
    """
    out = {}
    for name, pos in positions.items():
        px = close.reindex(index=pos.index, columns=pos.columns)
        weights = vol_scaled_weights(pos, ex_ante_vol.reindex(index=pos.index, columns=pos.columns), target_vol, max_gross)
        if portfolio_target_vol is not None:
            weights = portfolio_vol_scaled_weights(weights, px, portfolio_target_vol, max_gross=max_gross)
        out[name] = simulate(px, weights, cost_bps, name, slippage_bps=slippage_bps)
    return out


def benchmark_positions(
    close: pd.DataFrame, index: pd.DatetimeIndex, tsmom_lookback: int = 252, macd: bool = True
) -> dict[str, pd.DataFrame]:
    """Long-only, TSMOM and (unless ``macd=False``) MACD positions on ``index``, computed on the
    full history of ``close`` so the 12-month lookback and the MACD normalisations are available
    at the first date, then sliced."""
    out = {
        "Long only": long_only_positions(close).reindex(index),
        "TSMOM": tsmom_positions(close, tsmom_lookback).reindex(index),
    }
    if macd:
        out["MACD"] = macd_positions(close).reindex(index)
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
    ``cost_bps``). ``kit.metrics.performance_table(sweep.to_dict("series"))`` gives the table.
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
