"""Risk overlays on positions: a drawdown control that scales exposure down past a threshold, ATR
stop-loss and take-profit (seed 004), and one strategy with and without them through the same
backtest. Every overlay uses data up to the decision time only."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from ..conventions import TARGET_VOL
from ..features import kernels
from .backtest import simulate
from .sizing import vol_scaled_weights

__all__ = ["drawdown_control", "atr_stop_overlay", "overlay_strategies"]



def drawdown_control(
    returns: pd.Series,
    threshold: float = 0.10,
    floor: float = 0.25,
    full_drawdown: float | None = None,
    feedback: bool = True,
    align: str = "returns",
) -> pd.Series:
    """Exposure multiplier in ``[floor, 1]`` that cuts exposure in a drawdown and restores it on recovery.

    Rule: with drawdown ``dd = 1 - equity / running peak`` (>= 0),
    ``m(dd) = 1 - (1 - floor) * clip((dd - threshold) / (full_drawdown - threshold), 0, 1)``:
    full exposure up to ``threshold``, falling linearly to ``floor`` at ``full_drawdown`` (default
    ``2 * threshold``), and rising again along the same line as the drawdown shrinks (no memory, no
    hysteresis). The multiplier for day t uses the drawdown at the close of t-1, i.e. returns up to
    t-1 only; day 0 gets 1.

    With ``feedback=True`` (default) the drawdown is that of the controlled equity,
    ``prod (1 + m_s r_s)``: the account's own drawdown, computed day by day. With ``feedback=False``
    it is the drawdown of the uncontrolled returns (a signal-level rule).

    Parameters
    ----------
    returns : (T,) Series of the strategy's daily simple returns at full exposure; NaN or inf raise.
    threshold : drawdown (fraction, > 0) where cutting starts.
    floor : smallest multiplier, in [0, 1].
    full_drawdown : drawdown where the floor is reached, in (threshold, 1]; default ``2 * threshold``.
    feedback : see above.
    align : ``"returns"`` (default): ``m[t]`` multiplies the return of day t, so the controlled
        returns are ``m * returns``. ``"weights"``: ``m[t]`` is decided at the close of t (from
        returns up to t) and multiplies the weights row t of the kit's convention (row t earns
        ``r_{t+1}``); it equals the ``"returns"`` series shifted back by one day.

    Returns
    -------
    (T,) float64 Series named ``exposure_multiplier``, values in ``[floor, 1]``.

    Raises
    ------
    ValueError
        Bad parameters or non-finite returns (named).
    """
    r = pd.Series(returns).astype("float64")
    if not np.isfinite(r.to_numpy()).all():
        raise ValueError(f"returns must be finite; {int((~np.isfinite(r.to_numpy())).sum())} NaN/inf values")
    full = 2.0 * threshold if full_drawdown is None else float(full_drawdown)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    if not threshold < full <= 1.0:
        raise ValueError(f"full_drawdown must lie in (threshold, 1], got {full!r} with threshold {threshold!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must lie in [0, 1], got {floor!r}")
    if align not in ("returns", "weights"):
        raise ValueError(f"align must be 'returns' or 'weights', got {align!r}")

    def mult(dd):
        return 1.0 - (1.0 - floor) * np.clip((dd - threshold) / (full - threshold), 0.0, 1.0)

    x = r.to_numpy()
    T = len(x)
    decided = np.empty(T)  # decided[t]: multiplier decided at the close of t (data up to t)
    if feedback:
        eq = peak = 1.0
        m_prev = 1.0
        for t in range(T):
            eq *= 1.0 + m_prev * x[t]
            peak = max(peak, eq)
            m_prev = float(mult(1.0 - eq / peak))
            decided[t] = m_prev
    else:
        eq = np.cumprod(1.0 + x)
        decided = mult(1.0 - eq / np.maximum.accumulate(np.maximum(eq, 1.0)))
    if align == "weights":
        out = decided
    else:
        out = np.concatenate([[1.0], decided[:-1]])[:T]
    return pd.Series(out, index=r.index, name="exposure_multiplier")



@njit(cache=True)
def _atr_stop_nb(pos, close, atr, stop_atr, tp_ratio):
    T, N = pos.shape
    out = pos.copy()
    code = np.zeros((T, N), dtype=np.int8)
    entry_row = np.full((T, N), -1, dtype=np.int64)
    for j in range(N):
        prev_sign = 0
        stopped = False
        stop = np.nan
        tp = np.nan
        e_row = -1
        for t in range(T):
            p = pos[t, j]
            s = 0
            if not np.isnan(p):
                if p > 0:
                    s = 1
                elif p < 0:
                    s = -1
            if s != prev_sign:
                # a new trade (or flat): entry at today's close, stop levels fixed from today's ATR
                stopped = False
                stop = np.nan
                tp = np.nan
                if s != 0:
                    e_row = t
                    c0 = close[t, j]
                    a = atr[t, j]
                    if np.isfinite(c0) and np.isfinite(a) and a > 0:
                        d = stop_atr * a
                        stop = c0 - s * d
                        tp = c0 + s * tp_ratio * d
                prev_sign = s
                continue
            if s == 0:
                continue
            if stopped:
                out[t, j] = 0.0
                continue
            c = close[t, j]
            if np.isnan(c) or np.isnan(stop):
                continue
            hit_stop = c <= stop if s > 0 else c >= stop
            hit_tp = c >= tp if s > 0 else c <= tp
            if hit_stop or hit_tp:
                stopped = True
                out[t, j] = 0.0
                code[t, j] = 1 if hit_stop else 2
                entry_row[t, j] = e_row
    return out, code, entry_row



def atr_stop_overlay(
    positions: pd.DataFrame,
    high: pd.DataFrame,
    low: pd.DataFrame,
    close: pd.DataFrame,
    atr_window: int = 14,
    stop_atr: float = 2.0,
    take_profit_ratio: float = 1.5,
    return_events: bool = False,
):
    """ATR stop-loss and take-profit applied to a positions frame, as a backtest overlay.

    A *trade* starts on a row where the sign of the position changes (from flat/NaN or the other
    side) and lasts while the sign stays the same (size changes within a side are the same trade).
    At entry (row t0): entry price ``E = close_{t0}``, stop distance ``d = stop_atr * ATR_{t0}``
    (Wilder ATR over ``atr_window`` days as published, :func:`kit.features.kernels.atr_wilder`, data up to t0),
    stop ``E - d`` and take-profit ``E + take_profit_ratio * d`` for a long (mirrored for a short):
    2 x ATR and 1.5 x the stop distance as in seed 004. On each later row t the close is compared
    with both levels (closes, not intraday highs/lows: with daily bars the fill price of an intraday
    touch is unknown, and the kit's backtests fill at the close). A hit at the close of t flattens
    row t (the order fills at that close, as in :func:`kit.portfolio.backtest.simulate`): returns up to
    ``r_t`` are unchanged, the first one affected is ``r_{t+1}``; nothing at row t uses data after t.
    The position stays 0 until the signal's sign changes (to the other side or through 0/NaN), which
    starts a new trade. A trade whose entry ATR is NaN (too little history) or whose entry close is
    NaN has no stop; a NaN close on a later day skips that day's check.

    Parameters
    ----------
    positions : (T, N) DataFrame of positions or weights (NaN = not live, kept NaN).
    high, low, close : (T, N) DataFrames of split-adjusted prices with the same labels.
    atr_window : Wilder ATR window (default 14).
    stop_atr : stop distance in ATRs (default 2.0), > 0.
    take_profit_ratio : take-profit distance / stop distance (default 1.5), > 0.
    return_events : also return a DataFrame of exits with columns ``symbol, entry_date,
        entry_price, exit_date, exit_price, reason`` ("stop" or "take_profit"), ``stop``,
        ``take_profit``.

    Returns
    -------
    (T, N) float64 DataFrame of positions, or ``(positions, events)``.

    Raises
    ------
    ValueError
        Labels of the four frames differ, or a parameter is not positive.
    """
    for name, f in (("high", high), ("low", low), ("close", close)):
        if not (f.index.equals(positions.index) and f.columns.equals(positions.columns)):
            raise ValueError(f"{name} must have the same index and columns as positions")
    if not stop_atr > 0:
        raise ValueError(f"stop_atr must be > 0, got {stop_atr!r}")
    if not take_profit_ratio > 0:
        raise ValueError(f"take_profit_ratio must be > 0, got {take_profit_ratio!r}")
    c = close.to_numpy(dtype="float64")
    atr = kernels.atr_wilder(high.to_numpy(dtype="float64"), low.to_numpy(dtype="float64"), c, atr_window)
    out, code, entry_row = _atr_stop_nb(positions.to_numpy(dtype="float64"), c, atr, float(stop_atr), float(take_profit_ratio))
    result = pd.DataFrame(out, index=positions.index, columns=positions.columns)
    if not return_events:
        return result
    rows = []
    for t, j in zip(*np.nonzero(code), strict=True):
        t0 = entry_row[t, j]
        s = 1.0 if positions.iat[t0, j] > 0 else -1.0
        d = stop_atr * atr[t0, j]
        rows.append(
            {
                "symbol": positions.columns[j],
                "entry_date": positions.index[t0],
                "entry_price": c[t0, j],
                "exit_date": positions.index[t],
                "exit_price": c[t, j],
                "reason": "stop" if code[t, j] == 1 else "take_profit",
                "stop": c[t0, j] - s * d,
                "take_profit": c[t0, j] + s * take_profit_ratio * d,
            }
        )
    cols = ["symbol", "entry_date", "entry_price", "exit_date", "exit_price", "reason", "stop", "take_profit"]
    events = pd.DataFrame(rows, columns=cols).sort_values(["exit_date", "symbol"], ignore_index=True)
    return result, events



def overlay_strategies(
    close: pd.DataFrame,
    high: pd.DataFrame,
    low: pd.DataFrame,
    positions: pd.DataFrame,
    ex_ante_vol: pd.DataFrame,
    cost_bps: float = 0.0,
    target_vol: float = TARGET_VOL,
    max_gross: float = 0.95,
    stop_atr: float = 2.0,
    take_profit_ratio: float = 1.5,
    dd_threshold: float = 0.10,
    dd_floor: float = 0.25,
) -> dict:
    """One strategy with and without the risk overlays, all through the same backtest.

    Four variants of ``positions`` (volatility-targeted by :func:`kit.portfolio.backtest.vol_scaled_weights`,
    simulated by :func:`kit.portfolio.backtest.simulate` at ``cost_bps``): ``base``; ``ATR stops``
    (:func:`atr_stop_overlay` on the positions); ``drawdown control`` (the weights multiplied by
    :func:`drawdown_control` of the base strategy's returns, ``align="weights"``, feedback on the
    controlled equity: decided at each close from data up to it); ``stops + drawdown control``.
    Costs of every change of exposure are paid.

    Parameters
    ----------
    close, high, low : (T, N) adjusted prices covering ``positions``' dates and symbols.
    positions : (T_p, N) positions in [-1, 1].
    ex_ante_vol : (T, N) annualised ex-ante volatility.

    Returns
    -------
    dict name -> :class:`kit.portfolio.backtest.BacktestResult`, plus ``"exposure_multiplier"`` -> (T_p,)
    Series of the drawdown control's multiplier (on the base returns).

    Raises
    ------
    ValueError
        As the functions it calls.
    """
    idx, cols = positions.index, positions.columns
    px, hi, lo = (f.reindex(index=close.index, columns=cols) for f in (close, high, low))
    vol = ex_ante_vol.reindex(index=idx, columns=cols)
    stopped = atr_stop_overlay(positions.reindex(close.index), hi, lo, px, stop_atr=stop_atr, take_profit_ratio=take_profit_ratio).reindex(idx)
    out = {}
    for name, pos in (("base", positions), ("ATR stops", stopped)):
        w = vol_scaled_weights(pos, vol, target_vol, max_gross)
        out[name] = simulate(px.reindex(idx), w, cost_bps, name)
        m = drawdown_control(out[name].returns, dd_threshold, dd_floor, align="weights")
        label = "drawdown control" if name == "base" else "stops + drawdown control"
        out[label] = simulate(px.reindex(idx), w.mul(m, axis=0), cost_bps, label)
        if name == "base":
            out["exposure_multiplier"] = m
    return {k: out[k] for k in ("base", "ATR stops", "drawdown control", "stops + drawdown control", "exposure_multiplier")}

