"""Stress tests (current weights replayed over the worst historical windows) and the rolling average
pairwise correlation of returns."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .risk import _as_weights

__all__ = ["stress_test", "rolling_average_correlation", "DEFAULT_STRESS_WINDOWS"]

DEFAULT_STRESS_WINDOWS: dict[str, tuple[str, str]] = {
    "GFC autumn 2008": ("2008-09-01", "2008-11-30"),
    "COVID March 2020": ("2020-02-19", "2020-03-23"),
}




def rolling_average_correlation(returns: pd.DataFrame, window: int = 63) -> pd.Series:
    """Mean off-diagonal pairwise Pearson correlation over a rolling window.

    At each date t, the live assets are those with a return on every one of the last ``window``
    rows and a non-zero variance there. With ``z`` the window's returns demeaned and scaled to unit
    norm per asset, ``rho_ij = sum_t z_ti z_tj``, so
    ``sum_{i,j} rho_ij = sum_t (sum_i z_ti)^2`` and the average over the ``n (n - 1)`` off-diagonal
    pairs is ``(sum_t (sum_i z_ti)^2 - n) / (n (n - 1))``: O(window x N) per date instead of a full
    correlation matrix. Equal to the mean of the off-diagonal entries of
    ``returns.rolling(window).corr()`` on complete windows (tested).

    Parameters
    ----------
    returns : (T, N) DataFrame of daily returns (NaN = not live).
    window : rows per window (default 63, a quarter), >= 2.

    Returns
    -------
    (T,) float64 Series named ``average_correlation``; NaN before the first full window and where
    fewer than 2 assets are live.

    Raises
    ------
    ValueError
        ``window < 2`` or infinite returns.
    """
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    window = int(window)
    x = returns.to_numpy(dtype="float64")
    if np.isinf(x).any():
        raise ValueError(f"returns contain {int(np.isinf(x).sum())} infinite values")
    T = x.shape[0]
    out = np.full(T, np.nan)
    valid = (~np.isnan(x)).astype(np.int64)
    csum = np.vstack([np.zeros((1, x.shape[1]), dtype=np.int64), np.cumsum(valid, axis=0)])
    for t in range(window - 1, T):
        live = (csum[t + 1] - csum[t + 1 - window]) == window
        if live.sum() < 2:
            continue
        b = x[t + 1 - window : t + 1, live]
        b = b - b.mean(axis=0)
        norm = np.sqrt((b * b).sum(axis=0))
        ok = norm > 1e-14 * np.maximum(np.abs(x[t + 1 - window : t + 1, live]).max(axis=0), 1e-300)
        n = int(ok.sum())
        if n < 2:
            continue
        z = b[:, ok] / norm[ok]
        total = float((z.sum(axis=1) ** 2).sum())
        out[t] = (total - n) / (n * (n - 1))
    return pd.Series(out, index=returns.index, name="average_correlation")



def _window_stats(rp: pd.Series) -> dict:
    if len(rp) == 0:
        return {"cumulative_return": np.nan, "worst_day": np.nan, "worst_day_date": pd.NaT, "max_drawdown": np.nan}
    eq = (1.0 + rp).cumprod()
    dd = eq / np.maximum(eq.cummax(), 1.0) - 1.0
    return {
        "cumulative_return": float(eq.iloc[-1] - 1.0),
        "worst_day": float(rp.min()),
        "worst_day_date": rp.idxmin(),
        "max_drawdown": float(dd.min()),
    }



def stress_test(
    weights: pd.Series,
    returns: pd.DataFrame,
    windows: Mapping[str, tuple] | None = None,
    worst_k: int = 0,
    worst_window: int = 21,
) -> pd.DataFrame:
    """Replay historical stress windows on today's weights.

    Each scenario applies the fixed weights (rebalanced daily) to the asset returns of the window:
    ``r_p,t = sum_i w_i r_{t,i}``. A held symbol without a return on a day (not yet listed, halted,
    not in ``returns``) contributes 0 that day: it is **zeroed and counted**, listed in
    ``missing_symbols`` with its gross weight in ``missing_weight`` and the number of zeroed
    (symbol, day) cells in ``missing_obs``, so a reader can judge how much of the book the scenario
    covers. A window with no rows in ``returns`` gives ``days = 0`` and NaN statistics.

    ``worst_k > 0`` adds the k worst non-overlapping ``worst_window``-day periods of today's
    portfolio over the whole sample (greedy by compounded return), named ``worst 21d #1`` etc.

    Parameters
    ----------
    weights : (N,) Series of current weights (fractions of equity); NaN/inf raise.
    returns : (T, N') DataFrame of daily simple returns with a sorted DatetimeIndex.
    windows : mapping name -> (start, end) inclusive dates; default :data:`DEFAULT_STRESS_WINDOWS`
        (autumn 2008: 2008-09-01..2008-11-30, COVID crash: 2020-02-19..2020-03-23).
    worst_k : number of worst rolling windows to add (default 0).
    worst_window : their length in trading days (default 21).

    Returns
    -------
    DataFrame indexed by scenario with columns ``start, end, days, cumulative_return, worst_day,
    worst_day_date, max_drawdown`` (negative fraction, from the window's start), ``missing_symbols``
    (comma-separated), ``missing_weight``, ``missing_obs``.

    Raises
    ------
    ValueError
        Non-finite weights, an unsorted or non-datetime index, infinite returns, a window with
        start after end, or bad ``worst_k`` / ``worst_window``.
    """
    w = _as_weights(weights)
    if not np.isfinite(w.to_numpy()).all():
        raise ValueError(f"weights must be finite; bad symbols: {list(w.index[~np.isfinite(w.to_numpy())])}")
    if not isinstance(returns.index, pd.DatetimeIndex) or not returns.index.is_monotonic_increasing:
        raise ValueError("returns must have a sorted DatetimeIndex")
    held = w[w != 0]
    r = returns.reindex(columns=held.index).astype("float64")
    if np.isinf(r.to_numpy()).any():
        raise ValueError("returns contain infinite values for held symbols")
    windows = DEFAULT_STRESS_WINDOWS if windows is None else windows
    if int(worst_k) != worst_k or worst_k < 0:
        raise ValueError(f"worst_k must be an integer >= 0, got {worst_k!r}")
    if int(worst_window) != worst_window or worst_window < 1:
        raise ValueError(f"worst_window must be an integer >= 1, got {worst_window!r}")

    def scenario(start, end) -> dict:
        sub = r.loc[start:end]
        miss = sub.isna()
        missing = [s for s in held.index if miss[s].any()]
        rp = pd.Series(sub.fillna(0.0).to_numpy() @ held.to_numpy(), index=sub.index)
        row = {"start": pd.Timestamp(start), "end": pd.Timestamp(end), "days": len(sub)}
        row.update(_window_stats(rp))
        row.update(
            missing_symbols=",".join(map(str, missing)),
            missing_weight=float(held[missing].abs().sum()) if missing else 0.0,
            missing_obs=int(miss.to_numpy().sum()),
        )
        return row

    rows = {}
    for name, (start, end) in windows.items():
        if pd.Timestamp(start) > pd.Timestamp(end):
            raise ValueError(f"stress window {name!r}: start {start} is after end {end}")
        rows[name] = scenario(start, end)
    if worst_k:
        rp_all = pd.Series(r.fillna(0.0).to_numpy() @ held.to_numpy(), index=r.index)
        comp = np.log1p(rp_all.clip(lower=-1 + 1e-12)).rolling(worst_window).sum().to_numpy()
        taken = np.zeros(len(comp), dtype=bool)
        order = np.argsort(np.where(np.isnan(comp), np.inf, comp), kind="stable")
        k = 0
        for end_i in order:
            if k >= worst_k or np.isnan(comp[end_i]):
                break
            lo = end_i - worst_window + 1
            if taken[lo : end_i + 1].any():
                continue
            taken[lo : end_i + 1] = True
            k += 1
            rows[f"worst {worst_window}d #{k}"] = scenario(r.index[lo], r.index[end_i])
    cols = ["start", "end", "days", "cumulative_return", "worst_day", "worst_day_date", "max_drawdown",
            "missing_symbols", "missing_weight", "missing_obs"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols)

