"""The paper loop's feature state on disk: the streaming DMN features plus each symbol's last
``lookback`` feature rows (the model's input window)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..base.atomic import atomic_path
from ..features import StreamingFeatures

__all__ = ["FeatureWindow"]



class FeatureWindow:
    """The streaming DMN feature state (:class:`kit.features.streaming.StreamingFeatures`) plus the last
    ``lookback`` feature rows of every symbol, the model's input window.

    Saved as two ``.npz`` files (``<stem>.state.npz``, ``<stem>.window.npz``) written atomically;
    a window whose date differs from the state's is discarded and rebuilt from history.
    """

    def __init__(self, lookback: int):
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
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.sf.save(stem.with_suffix(".state.npz"))
        with atomic_path(stem.with_suffix(".window.npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, buffer=self.buffer, dates=np.array([d.isoformat() for d in self.dates]), symbols=np.array(self.sf.symbols), lookback=self.lookback)

    @classmethod
    def load(cls, stem, lookback: int):
        """The saved window, or None when missing, unreadable or inconsistent (then rebuild)."""
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

