"""Streaming features: O(1) work and fixed-size state per symbol per bar, equal to the batch kernels.

:class:`StreamingFeatures` keeps, for every active symbol, the state of the online primitives of
:mod:`kit.features.kernels` (EWM blocks, rolling windows, lag buffers) in one column of a ``(width, symbols)`` float64
array per feature set (structure of arrays: one bar reads each state slot across symbols
contiguously). Each bar runs the same ``*_step`` functions as the batch feature sets, so its output is
identical to :func:`kit.features.sets.feature_set` on the same history, bar by bar.

A symbol that is active but absent from a bar is fed NaN for that bar (exactly what the batch
kernels see for a missing day in a wide frame). Bars must arrive in strictly increasing date order;
a second bar with the same date is refused, so a cron job that runs twice on one day cannot corrupt
the state. The state saves atomically to one ``.npz`` file and loads back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..base.atomic import atomic_path
from .sets import FEATURE_SETS

__all__ = ["StreamingFeatures", "StreamingStateError"]

_FORMAT_VERSION = 1


class StreamingStateError(RuntimeError):
    """A bar out of order, a second bar for the same date, or a state file that does not fit."""


class StreamingFeatures:
    """Per-symbol streaming state for any of the feature sets of :data:`kit.features.FEATURE_SETS`
    (``dmn``, ``ldtm``, ``bocpd``).

    Parameters
    ----------
    feature_sets : sequence of set names; outputs are concatenated in this order.
    symbols : initial symbols.

    Attributes
    ----------
    names : list of output feature names (F).
    symbols : list of active symbols, in output order (N).
    fields : price fields a bar must carry.
    last_date : date of the last bar (``None`` before the first).
    """

    def __init__(self, feature_sets=("dmn",), symbols=()):
        feature_sets = tuple(feature_sets)
        unknown = [s for s in feature_sets if s not in FEATURE_SETS]
        if not feature_sets or unknown:
            raise ValueError(f"feature_sets must be a non-empty subset of {sorted(FEATURE_SETS)}, got {feature_sets!r}")
        self.feature_sets = feature_sets
        self._specs = {s: FEATURE_SETS[s] for s in feature_sets}
        self.names = [n for s in feature_sets for n in self._specs[s].names]
        self.fields = tuple(dict.fromkeys(f for s in feature_sets for f in self._specs[s].fields))
        self._state = {s: np.empty((self._specs[s].width, 0)) for s in feature_sets}
        self._slot: dict[str, int] = {}
        self._free: list[int] = []
        self.symbols: list[str] = []
        self._slots = np.zeros(0, dtype=np.int64)
        self.last_date: pd.Timestamp | None = None
        self.bars = 0
        if symbols:
            self.add_symbols(symbols)

    # ----------------------------------------------------------------------------- symbols
    def _grow(self, need: int) -> None:
        cap = next(iter(self._state.values())).shape[1]
        if need <= cap:
            return
        new_cap = max(need, 2 * cap, 16)
        for s, arr in self._state.items():
            grown = np.empty((arr.shape[0], new_cap))
            grown[:, :cap] = arr
            self._state[s] = grown
        self._free.extend(range(new_cap - 1, cap - 1, -1))

    def add_symbols(self, symbols) -> None:
        """Start tracking symbols with empty state (their features are NaN until their windows fill).

        Raises
        ------
        ValueError
            A symbol is already active (names it).
        """
        symbols = [str(s) for s in symbols]
        dup = [s for s in symbols if s in self._slot]
        if dup or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols already active or repeated: {dup or symbols}")
        self._grow(len(self._slot) + len(symbols))
        new = []
        for s in symbols:
            if not self._free:
                self._grow(len(self._slot) + 1)
            slot = self._free.pop()
            self._slot[s] = slot
            self.symbols.append(s)
            new.append(slot)
        slots = np.asarray(new, dtype=np.int64)
        for name in self.feature_sets:
            self._specs[name].init_all(self._state[name], slots)
        self._slots = np.asarray([self._slot[s] for s in self.symbols], dtype=np.int64)

    def remove_symbols(self, symbols) -> None:
        """Stop tracking symbols (e.g. delisted); their state is discarded.

        Raises
        ------
        KeyError
            A symbol is not active (names it).
        """
        symbols = [str(s) for s in symbols]
        missing = [s for s in symbols if s not in self._slot]
        if missing:
            raise KeyError(f"symbols not active: {missing}")
        for s in symbols:
            self._free.append(self._slot.pop(s))
        gone = set(symbols)
        self.symbols = [s for s in self.symbols if s not in gone]
        self._slots = np.asarray([self._slot[s] for s in self.symbols], dtype=np.int64)

    # ----------------------------------------------------------------------------- updates
    def _check_date(self, date) -> pd.Timestamp | None:
        if date is None:
            return None
        date = pd.Timestamp(date)
        if self.last_date is not None and date <= self.last_date:
            raise StreamingStateError(f"bar date {date.date()} is not after the last bar {self.last_date.date()}; refusing to apply it twice")
        return date

    def _run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Step every feature set over ``(T, N_active)`` arrays; returns ``(T, N, F)``."""
        outs = []
        for name in self.feature_sets:
            sp = self._specs[name]
            outs.append(sp.run(self._state[name], self._slots, *(arrays[f] for f in sp.fields)))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)

    def update_arrays(self, date=None, **fields: np.ndarray) -> np.ndarray:
        """Fast path: one bar as ``(N,)`` float64 arrays in the order of :attr:`symbols` (NaN for a
        symbol with no bar). Returns this bar's features ``(N, F)``.

        Raises
        ------
        ValueError
            A required field is missing or has the wrong length.
        StreamingStateError
            ``date`` not after the last bar.
        """
        date = self._check_date(date)
        n = len(self.symbols)
        arrays = {}
        for f in self.fields:
            if f not in fields:
                raise ValueError(f"bar lacks field {f!r} (needs {list(self.fields)})")
            a = np.asarray(fields[f], dtype=np.float64)
            if a.shape != (n,):
                raise ValueError(f"field {f!r} has shape {a.shape}, expected ({n},) for the active symbols")
            arrays[f] = a.reshape(1, n)
        out = self._run(arrays)[0]
        self.bars += 1
        if date is not None:
            self.last_date = date
        return out

    def update(self, bar: pd.DataFrame, date=None, add_unknown: bool = False) -> pd.DataFrame:
        """One bar for many symbols: a frame indexed by symbol with the needed price columns.

        Active symbols absent from ``bar`` get NaN for this bar. Symbols in ``bar`` that are not
        active raise, unless ``add_unknown`` (then they are added first).

        Returns
        -------
        DataFrame indexed by the active symbols, one column per feature name.
        """
        index = [str(s) for s in bar.index]
        unknown = [s for s in index if s not in self._slot]
        if unknown:
            if not add_unknown:
                raise KeyError(f"bar has symbols that are not active: {unknown[:10]} (use add_unknown=True or add_symbols)")
            self.add_symbols(unknown)
        frame = bar.copy()
        frame.index = index
        frame = frame.reindex(self.symbols)
        out = self.update_arrays(date, **{f: frame[f].to_numpy(dtype="float64") for f in self.fields if f in frame.columns})
        return pd.DataFrame(out, index=self.symbols, columns=self.names)

    def warm_up(self, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """Replay history: aligned wide ``(T, N)`` frames by field, dates in the index. Symbols not
        yet active are added; active symbols missing from the frames get NaN bars. Dates must all be
        after :attr:`last_date`. Returns the features of the last bar (as :meth:`update`)."""
        close = frames["close"]
        dates = pd.DatetimeIndex(close.index)
        if len(dates) == 0:
            raise ValueError("warm_up needs at least one bar")
        if not dates.is_monotonic_increasing or dates.has_duplicates:
            raise ValueError("warm_up frames must have strictly increasing dates")
        self._check_date(dates[0])
        new = [str(s) for s in close.columns if str(s) not in self._slot]
        if new:
            self.add_symbols(new)
        arrays = {}
        for f in self.fields:
            if f not in frames:
                raise ValueError(f"warm_up lacks field {f!r} (needs {list(self.fields)})")
            w = frames[f].copy()
            w.columns = [str(c) for c in w.columns]
            arrays[f] = np.ascontiguousarray(w.reindex(columns=self.symbols).to_numpy(dtype="float64"))
        out = self._run(arrays)
        self.bars += len(dates)
        self.last_date = dates[-1]
        return pd.DataFrame(out[-1], index=self.symbols, columns=self.names)

    # ----------------------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write the whole state atomically to ``path`` (``.npz``); returns the path."""
        meta = {
            "version": _FORMAT_VERSION,
            "feature_sets": list(self.feature_sets),
            "symbols": self.symbols,
            "last_date": None if self.last_date is None else self.last_date.isoformat(),
            "bars": self.bars,
            "widths": {s: self._specs[s].width for s in self.feature_sets},
        }
        arrays = {f"state_{s}": self._state[s][:, self._slots] for s in self.feature_sets}
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path) -> StreamingFeatures:
        """Load a state written by :meth:`save`.

        Raises
        ------
        StreamingStateError
            Unknown format version or a state layout that does not match this version of the kit.
        """
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != _FORMAT_VERSION:
                raise StreamingStateError(f"{path}: state format version {meta.get('version')!r}, expected {_FORMAT_VERSION}")
            obj = cls(meta["feature_sets"], meta["symbols"])
            for s in obj.feature_sets:
                arr = z[f"state_{s}"]
                width = obj._specs[s].width
                if arr.shape != (width, len(obj.symbols)):
                    raise StreamingStateError(f"{path}: state_{s} has shape {arr.shape}, expected {(width, len(obj.symbols))}")
                obj._state[s][:, obj._slots] = arr
        obj.last_date = None if meta["last_date"] is None else pd.Timestamp(meta["last_date"])
        obj.bars = int(meta["bars"])
        return obj
