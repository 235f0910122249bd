"""Positions to portfolios: volatility targeting, equal-risk aggregation, costs, benchmarks.

Timing convention: a position decided at the close of day t (from data up to t) is held from the
close of t to the close of t+1 and earns ``r_{t+1}``. vectorbt fills an order placed at row t at
row t's close, which is exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "vol_scaled_weights",
    "long_only_positions",
    "tsmom_positions",
    "simulate",
    "BacktestResult",
    "turnover",
    "compare_strategies",
    "benchmark_positions",
    "reference_returns",
]


def vol_scaled_weights(
    positions: pd.DataFrame, ex_ante_vol: pd.DataFrame, target_vol: float = 0.15, max_gross: float = 0.95
) -> pd.DataFrame:
    """Portfolio weights from positions: per-asset volatility targeting and equal-risk averaging.

    ``w_{t,i} = X_{t,i} * target_vol / ex_ante_vol_{t,i} / N_t`` where ``N_t`` is the number of
    assets live at t (finite position and positive volatility): the portfolio return is the average
    of the live assets' captured returns, as in Lim et al. (2019), eq. 1. Assets that are not live
    get weight 0. When the gross exposure ``sum_i |w_{t,i}|`` exceeds ``max_gross`` (a fraction of
    equity), all weights of that day are scaled down by the same factor so it equals ``max_gross``.
    The kit does not borrow: vectorbt limits purchases (and short collateral) to the available cash
    net of fees, so a book near 100% gross would be silently clipped and deviate from its target.
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
    gross = np.abs(w).sum(axis=1, keepdims=True)
    scale = np.where(gross > max_gross, max_gross / np.where(gross > 0, gross, 1.0), 1.0)
    return pd.DataFrame(w * scale, index=positions.index, columns=positions.columns)


def long_only_positions(close: pd.DataFrame) -> pd.DataFrame:
    """Long-only benchmark: position +1 wherever a price exists, NaN elsewhere."""
    return close.notna().astype("float64").where(close.notna())


def tsmom_positions(close: pd.DataFrame, lookback: int = 252) -> pd.DataFrame:
    """Time-series momentum of Moskowitz, Ooi & Pedersen (2012): the sign of the past
    ``lookback``-day (12-month) return, ``sign(close_t / close_{t-lookback} - 1)``; NaN until
    ``lookback`` days of history exist."""
    return np.sign(close / close.shift(lookback) - 1.0)


def turnover(weights: pd.DataFrame) -> pd.Series:
    """Daily turnover of target weights: ``sum_i |w_{t,i} - w_{t-1,i}|`` (first day from zero)."""
    change = weights.fillna(0.0).diff()
    change.iloc[:1] = weights.iloc[:1].fillna(0.0)
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

    @property
    def equity(self) -> pd.Series:
        """Equity curve starting at 1.0."""
        return (1.0 + self.returns).cumprod()


def simulate(close: pd.DataFrame, weights: pd.DataFrame, cost_bps: float = 0.0, name: str = "strategy") -> BacktestResult:
    """Simulate target weights with vectorbt (``Portfolio.from_orders``, target-percent sizing,
    cash shared across assets, sells before buys each day, costs as a fraction of traded notional).

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes (string column labels).
    weights : (T, N) DataFrame of target weights decided at each close.
    cost_bps : cost per unit of traded notional in basis points (``fees = cost_bps / 1e4``).

    Gaps in ``close`` are forward-filled for valuation only (a held position keeps its last price
    through a missing day); before a symbol's first price the weight must be 0 and the price is
    back-filled so the simulator has a number (no position is held, so it has no effect).

    Raises
    ------
    ValueError
        Negative ``cost_bps``, mismatched labels, or non-zero weight where no price exists.
    """
    import vectorbt as vbt

    if cost_bps < 0:
        raise ValueError(f"cost_bps must be >= 0, got {cost_bps}")
    if not (weights.index.equals(close.index) and list(weights.columns) == list(close.columns)):
        raise ValueError("weights and close must have the same dates and symbols")
    no_price = close.isna().to_numpy() & (weights.to_numpy() != 0)
    if no_price.any():
        t, i = np.argwhere(no_price)[0]
        raise ValueError(f"weights: non-zero weight {weights.iat[t, i]} for {close.columns[i]} on {close.index[t].date()} where close is NaN")
    px = close.ffill().bfill()
    px.columns = [str(c) for c in px.columns]
    size = weights.copy()
    size.columns = px.columns
    pf = vbt.Portfolio.from_orders(
        px,
        size=size,
        size_type="targetpercent",
        direction="both",
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
        fees=cost_bps / 1e4,
        init_cash=1.0,
        freq="1D",
    )
    rets = pf.returns()
    rets.name = name
    return BacktestResult(name, pf, rets, weights, cost_bps)


def compare_strategies(
    close: pd.DataFrame,
    positions: dict[str, pd.DataFrame],
    ex_ante_vol: pd.DataFrame,
    cost_bps: float = 0.0,
    target_vol: float = 0.15,
    max_gross: float = 0.95,
) -> dict[str, BacktestResult]:
    """Simulate several position sets on the same dates, symbols, volatility targeting and costs.

    Parameters
    ----------
    close : (T, N) adjusted closes covering every position frame's dates.
    positions : name -> (T_s, N) positions in [-1, 1]; each is simulated on its own dates.
    ex_ante_vol : (T, N) annualised ex-ante volatility (e.g. :func:`kit.features.ex_ante_vol`).

    Returns
    -------
    dict name -> :class:`BacktestResult`, in the input order.
    """
    out = {}
    for name, pos in positions.items():
        px = close.reindex(index=pos.index, columns=pos.columns)
        weights = vol_scaled_weights(pos, ex_ante_vol.reindex(index=pos.index, columns=pos.columns), target_vol, max_gross)
        out[name] = simulate(px, weights, cost_bps, name)
    return out


def benchmark_positions(close: pd.DataFrame, index: pd.DatetimeIndex, tsmom_lookback: int = 252) -> dict[str, pd.DataFrame]:
    """Long-only and TSMOM positions on ``index`` (computed on the full history of ``close`` so the
    12-month lookback is available at the first date, then sliced)."""
    return {
        "Long only": long_only_positions(close).reindex(index),
        "TSMOM": tsmom_positions(close, tsmom_lookback).reindex(index),
    }


def reference_returns(close: pd.DataFrame, weights: pd.DataFrame, cost_bps: float = 0.0) -> pd.Series:
    """Plain-numpy daily net returns of target weights, for cross-checking :func:`simulate`.

    At each close t the book is valued at ``V_t = cash + sum_i shares_i * p_{i,t}``, every asset is
    traded to ``shares_i = w_{i,t} * V_t / p_{i,t}`` (so weights drift with prices between
    rebalances and are restored at each close), and the cost ``cost_bps / 1e4 * sum_i |traded
    notional|`` is paid from cash. The return of day t is ``V_t^after / V_{t-1}^after - 1`` with
    ``V_{-1} = 1``. Prices are forward-filled through gaps (then back-filled before a listing),
    as in :func:`simulate`.

    Shapes: ``close`` and ``weights`` ``(T, N)``; returns ``(T,)``.
    """
    px = close.ffill().bfill().to_numpy(dtype="float64")
    w = weights.to_numpy(dtype="float64")
    fee = cost_bps / 1e4
    shares = np.zeros(px.shape[1])
    cash, prev_value = 1.0, 1.0
    out = np.empty(len(px))
    for t in range(len(px)):
        value = cash + shares @ px[t]
        target = w[t] * value / px[t]
        traded = np.abs(target - shares) @ px[t]
        cash += (shares - target) @ px[t] - fee * traded
        shares = target
        after = cash + shares @ px[t]
        out[t] = after / prev_value - 1.0
        prev_value = after
    return pd.Series(out, index=close.index, name="reference")
