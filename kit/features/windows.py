"""Windows of the feature arrays, in one place: the view of every window, training samples per
decision date, non-overlapping training sequences, and the prediction windows of a date range.

The window length is ``lookback`` (trading days) everywhere. Window ``w`` of a ``(T, ...)`` array
covers dates ``w .. w + lookback - 1`` and belongs to the decision date ``w + lookback - 1``: it uses
nothing after that date.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sliding_windows", "complete_windows", "padded_windows", "make_samples", "make_sequences", "rolling_windows"]


def sliding_windows(values: np.ndarray, lookback: int) -> np.ndarray:
    """All windows of ``lookback`` dates as a read-only **view** (no copy).

    ``values`` ``(T, N, F)`` -> ``(T - lookback + 1, N, lookback, F)``; window ``w`` covers dates
    ``w .. w + lookback - 1`` and belongs to decision date ``w + lookback - 1``.
    """
    if values.ndim != 3:
        raise ValueError(f"values must be (T, N, F), got shape {values.shape}")
    if not 1 <= lookback <= values.shape[0]:
        raise ValueError(f"lookback must be in [1, T={values.shape[0]}], got {lookback}")
    win = np.lib.stride_tricks.sliding_window_view(values, lookback, axis=0)  # (W, N, F, L)
    return win.transpose(0, 1, 3, 2)


def complete_windows(ok: np.ndarray, lookback: int) -> np.ndarray:
    """Which windows are complete: ``out[t, j]`` is True when ``ok[t - lookback + 1 .. t, j]`` are
    all True (the window of ``lookback`` dates ending at decision date t holds no bad value); False
    for ``t < lookback - 1``.

    Parameters
    ----------
    ok : ``(T, N)`` bool, True where a value is usable (e.g. finite).
    lookback : window length in dates, >= 1.

    Returns
    -------
    ``(T, N)`` bool. One cumulative count per column: O(T N) whatever the window length.
    """
    if ok.ndim != 2:
        raise ValueError(f"ok must be (T, N), got shape {ok.shape}")
    if int(lookback) != lookback or lookback < 1:
        raise ValueError(f"lookback must be an integer >= 1, got {lookback!r}")
    T, L = ok.shape[0], int(lookback)
    cum = np.concatenate([np.zeros((1, ok.shape[1]), np.int64), np.cumsum(~ok, axis=0)])
    out = np.zeros(ok.shape, bool)
    if T >= L:
        out[L - 1 :] = (cum[L:] - cum[: T - L + 1]) == 0
    return out


def make_samples(values: np.ndarray, targets: np.ndarray, lookback: int, start: int = 0, end: int | None = None):
    """Training samples ``(samples, lookback, F)`` for decision dates in ``[start, end)`` whose window
    and target are all finite.

    Parameters
    ----------
    values : ``(T, N, F)`` features; targets : ``(T, N)`` or ``(T, N, H)`` targets at the decision date.

    Returns
    -------
    X ``(S, lookback, F)``, y ``(S,)`` or ``(S, H)``, and ``where`` ``(S, 2)`` int64 (date index,
    symbol index) of each sample. X is a gathered copy (a selection cannot be a view).
    """
    T = values.shape[0]
    end = T if end is None else end
    win = sliding_windows(values, lookback)
    first = max(start, lookback - 1)
    dates = np.arange(first, end)
    tgt = targets if targets.ndim == 3 else targets[:, :, None]
    full = complete_windows(np.isfinite(values).all(axis=2), lookback)[dates]  # no bad date inside the window
    ok = full & np.isfinite(tgt[dates]).all(axis=2)
    di, si = np.nonzero(ok)
    X = win[dates[di] - lookback + 1, si]
    y = tgt[dates[di], si]
    return np.ascontiguousarray(X), (y[:, 0] if targets.ndim == 2 else y), np.stack([dates[di], si], axis=1)


def make_sequences(features: np.ndarray, target: np.ndarray, start: int, end: int, lookback: int, min_valid: int = 1):
    """Cut ``[start, end)`` into non-overlapping, end-aligned windows of ``lookback`` dates per symbol.

    Parameters
    ----------
    features : (T, N, F) float array, NaN where unknown.
    target : (T, N) float array, NaN where unknown.

    Returns
    -------
    X : (S, lookback, F) float32 with NaN replaced by 0; y : (S, lookback) float32 (NaN -> 0);
    mask : (S, lookback) bool, True where every feature and the target are finite. Windows with fewer
    than ``min_valid`` valid steps are dropped. The leading remainder (fewer than ``lookback``
    dates) is dropped so the most recent data is always used.
    """
    if features.ndim != 3 or target.shape != features.shape[:2]:
        raise ValueError(f"features (T, N, F) and target (T, N) disagree: {features.shape} vs {target.shape}")
    valid = np.isfinite(features).all(axis=-1) & np.isfinite(target)
    xs, ys, ms = [], [], []
    for stop in range(end, start + lookback - 1, -lookback):
        a = stop - lookback
        xs.append(features[a:stop].transpose(1, 0, 2))
        ys.append(target[a:stop].T)
        ms.append(valid[a:stop].T)
    if not xs:
        F = features.shape[-1]
        return np.zeros((0, lookback, F), np.float32), np.zeros((0, lookback), np.float32), np.zeros((0, lookback), bool)
    X = np.concatenate(xs)
    y = np.concatenate(ys)
    m = np.concatenate(ms)
    keep = m.sum(axis=1) >= min_valid
    X = np.nan_to_num(X[keep], nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    y = np.nan_to_num(y[keep], nan=0.0).astype(np.float32)
    return X, y, m[keep]


def padded_windows(features: np.ndarray, start: int, end: int, lookback: int, dtype=None) -> np.ndarray:
    """The window of ``lookback`` dates ending at each decision date in ``[start, end)``, as a view.

    ``features`` ``(T, N, F)`` -> ``(end - start, N, lookback, F)``; dates before the first row are
    NaN (the window of an early decision date is padded, never shortened). ``dtype`` casts the block
    first (e.g. float32 for a model); the result is a read-only view of that block.
    """
    T, N, F = features.shape
    if not 0 <= start <= end <= T:
        raise ValueError(f"need 0 <= start <= end <= T={T}, got start={start}, end={end}")
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    pad = max(0, lookback - 1 - start)
    block = features[max(0, start - lookback + 1) : end]
    if dtype is not None:
        block = block.astype(dtype)
    if pad:
        block = np.concatenate([np.full((pad, N, F), np.nan, dtype=block.dtype), block])
    win = np.lib.stride_tricks.sliding_window_view(block, lookback, axis=0)  # (D, N, F, L)
    return win.transpose(0, 1, 3, 2)


def rolling_windows(features: np.ndarray, start: int, end: int, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ending at each date in ``[start, end)`` for every symbol, for prediction.

    Returns ``X`` of shape ``((end - start) * N, lookback, F)`` float32 (NaN -> 0, zero-padded before
    the first date) ordered date-major, and ``valid`` of shape ``(end - start, N)``: True where all
    features at the decision date are finite.
    """
    F = features.shape[2]
    win = padded_windows(features, start, end, lookback)
    X = np.nan_to_num(win, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32).reshape(-1, lookback, F)
    valid = np.isfinite(features[start:end]).all(axis=-1)
    return X, valid
