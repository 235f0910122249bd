"""Walk-forward splits and the leakage count.

Time indices are positions on the ``(T,)`` date axis of the wide frames. A sample at decision date t
uses features up to t and a target that depends on prices up to ``t + horizon``. A split is leak-free
when no training or validation sample's target reaches into the test block (and no training
sample's target reaches into the validation block): the kit leaves an embargo of ``horizon`` dates
before each boundary and counts the rows that break the rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["LeakageError", "Split", "walk_forward_splits", "count_leakage"]



class LeakageError(RuntimeError):
    """A split would let a training or validation target overlap a later block."""



@dataclass(frozen=True)
class Split:
    """One walk-forward fold as half-open ``[start, end)`` position ranges on the date axis."""

    fold: int
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    horizon: int = 1

    def describe(self, dates: pd.DatetimeIndex) -> dict:
        """Dates of the fold's blocks (first and last date of each), for logs and reports."""

        def span(r):
            return (dates[r[0]].date().isoformat(), dates[r[1] - 1].date().isoformat()) if r[1] > r[0] else (None, None)

        (a, b), (c, d), (e, f) = span(self.train), span(self.val), span(self.test)
        return {"fold": self.fold, "train_start": a, "train_end": b, "val_start": c, "val_end": d, "test_start": e, "test_end": f}



def walk_forward_splits(
    dates: pd.DatetimeIndex,
    test_start,
    test_size: int = 252,
    test_end=None,
    val_fraction: float = 0.1,
    horizon: int = 1,
    train_start=None,
    min_train: int = 252,
) -> list[Split]:
    """Expanding-window walk-forward folds.

    The test period ``[test_start, test_end]`` is cut into consecutive blocks of ``test_size``
    trading days (the last may be shorter); the model is retrained before each block. Fold k trains
    on every date from ``train_start`` up to the block's start, less an embargo of ``horizon`` dates;
    its validation set is the last ``val_fraction`` of that window (with its own embargo before it).

    Parameters
    ----------
    dates : (T,) sorted DatetimeIndex, the axis of the feature and target arrays.
    test_start, test_end : date-like; first and last test dates (default last date).
    test_size : trading days per test block (default 252, one year).
    val_fraction : share of each training window used for validation, in (0, 0.5].
    horizon : trading days between a decision and the end of its target (1 for next-day returns).
    min_train : minimum training dates for the first fold.

    Returns
    -------
    list of :class:`Split` (at least one).

    Raises
    ------
    ValueError
        Bad parameter (named with its value), or too little data before ``test_start``.
    """
    dates = pd.DatetimeIndex(dates)
    if not dates.is_monotonic_increasing or dates.has_duplicates:
        raise ValueError("dates must be strictly increasing")
    if test_size < 1:
        raise ValueError(f"test_size must be >= 1, got {test_size}")
    if not 0.0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    t0 = 0 if train_start is None else int(dates.searchsorted(pd.Timestamp(train_start)))
    s = int(dates.searchsorted(pd.Timestamp(test_start)))
    end = len(dates) if test_end is None else int(dates.searchsorted(pd.Timestamp(test_end), side="right"))
    if s >= end:
        raise ValueError(f"test_start={test_start} is not before test_end={test_end or dates[-1].date()}")
    if s - horizon - t0 < min_train:
        raise ValueError(f"test_start={test_start}: only {s - horizon - t0} training dates before it (min_train={min_train})")
    splits = []
    fold = 0
    while s < end:
        e = min(s + test_size, end)
        train_end = s - horizon  # last decision date t with t + horizon < s is s - horizon - 1
        n_window = train_end - t0
        n_val = max(1, int(round(n_window * val_fraction)))
        v0 = train_end - n_val
        splits.append(Split(fold, (t0, v0 - horizon), (v0, train_end), (s, e), horizon))
        fold += 1
        s = e
    return splits



def count_leakage(split: Split, valid: np.ndarray | None = None, label_end: np.ndarray | None = None) -> int:
    """Rows whose target overlaps a later block: training rows whose target ends at or after the
    validation (or test) start, and validation rows whose target ends at or after the test start.

    The end of a row's target is ``t + horizon`` by default, or ``label_end`` when given: ``(T,)``
    or ``(T, N)`` int positions of the last price each row's target uses (e.g. the next rebalance
    date for a next-period return, :func:`kit.features.period_returns`). With ``valid`` (a
    ``(T, N)`` bool array of the rows used) rows are (date, symbol) pairs; without it, dates
    (``label_end`` must then be ``(T,)``). A correct split gives 0.

    Raises
    ------
    ValueError
        ``label_end`` of a shape that fits neither ``(T,)`` nor ``valid``.
    """
    h = split.horizon
    train = np.arange(*split.train)
    val = np.arange(*split.val)
    if label_end is None:
        end_train, end_val = train + h, val + h
    else:
        le = np.asarray(label_end)
        if le.ndim == 2 and valid is None:
            raise ValueError("a (T, N) label_end needs the (T, N) valid mask of the rows used")
        end_train, end_val = le[train], le[val]
    bad_train = (end_train >= split.val[0]) | (end_train >= split.test[0])
    bad_val = end_val >= split.test[0]
    if valid is None:
        return int(bad_train.sum() + bad_val.sum())
    v = np.asarray(valid, dtype=bool)
    if bad_train.ndim == 1:
        return int(v[train][bad_train].sum() + v[val][bad_val].sum())
    return int((v[train] & bad_train).sum() + (v[val] & bad_val).sum())
