"""Named feature sets: one table (:data:`FEATURE_SETS`) that the batch computation, the streaming state
(:mod:`kit.features.streaming`) and the models' input names all read. A new set is one entry here
plus its fused kernels in :mod:`kit.features.kernels`.

``dmn``: the Deep Momentum Network inputs (Lim, Zohren & Roberts, 2019, section 4.1):
volatility-normalised returns ``r_{t-k,t} / (sigma_t sqrt(k))`` for k in 1, 21, 63, 126, 252 with the
ex-ante daily volatility ``sigma_t`` (EWM std of daily returns, span 60), and the MACD indicators of
Baz et al. (2015) for (8, 24), (16, 48), (32, 96). Needs ``close``.

``ldtm``: the 11 per-ticker inputs of seed 003: open, high, low, close, volume, log returns over 1
and 5 days, RSI-14 (first-value-seeded Wilder smoothing, :func:`kit.features.kernels.rsi_ewm`; kept so the
set's values and the kit's results do not change; Wilder's published RSI is
:func:`kit.features.kernels.rsi_wilder`, used by :func:`kit.features.symbol_indicators`),
close over its 5-, 10- and 20-day simple moving averages. Needs ``open, high, low, close, volume``.

``bocpd``: Bayesian online changepoint detection (Adams & MacKay, 2007) on daily simple returns with
its default model (:mod:`kit.features.bocpd`): the probability of a changepoint within the last 5 and
21 bars and the expected run length over its truncation (500 bars). Needs ``close``. The GP
changepoint features of the Momentum Transformer paper fit a GP per window and have no streaming
step; they are computed in batches and cached (:mod:`kit.features.changepoint`,
:mod:`kit.features.cache`) and combined with these sets by :func:`kit.features.feature_array`.

Every feature at date t uses prices up to and including t only; NaN stays NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import bocpd as _bocpd
from . import kernels

__all__ = [
    "FeatureSetSpec",
    "FEATURE_SETS",
    "FeatureArray",
    "feature_set",
    "dmn_features",
    "stack_features",
    "TREE_LDTM_FEATURES",
    "tree_features",
]


@dataclass(frozen=True)
class FeatureSetSpec:
    """One feature set: its output ``names`` (F), the price ``fields`` it reads, the per-symbol state
    ``width`` of its streaming engine, and the numba engines: ``batch(*arrays) -> (T, N, F)``,
    ``init_all(S, slots)`` and ``run(S, slots, *arrays) -> (T, N, F)`` on a ``(width, capacity)``
    state (arrays in the order of ``fields``)."""

    name: str
    names: tuple
    fields: tuple
    width: int
    batch: Callable
    init_all: Callable
    run: Callable


FEATURE_SETS: dict[str, FeatureSetSpec] = {
    "dmn": FeatureSetSpec("dmn", kernels.DMN_NAMES, ("close",), kernels.DMN_WIDTH, kernels.dmn_batch, kernels.dmn_init_all, kernels.dmn_run),
    "ldtm": FeatureSetSpec(
        "ldtm", kernels.LDTM_NAMES, ("open", "high", "low", "close", "volume"), kernels.LDTM_WIDTH,
        kernels.ldtm_batch, kernels.ldtm_init_all, kernels.ldtm_run,
    ),
    "bocpd": FeatureSetSpec(
        "bocpd", _bocpd.BOCPD_NAMES, ("close",), _bocpd.BOCPD_WIDTH, _bocpd.bocpd_batch, _bocpd.bocpd_init_all, _bocpd.bocpd_stream_run,
    ),
}


def spec(name: str) -> FeatureSetSpec:
    """The :class:`FeatureSetSpec` of ``name``.

    Raises
    ------
    ValueError
        Unknown set name (lists the known ones).
    """
    if name not in FEATURE_SETS:
        raise ValueError(f"feature set {name!r} is unknown; known: {sorted(FEATURE_SETS)}")
    return FEATURE_SETS[name]



@dataclass
class FeatureArray:
    """Features as one ``(T, N, F)`` float64 array with its labels.

    Attributes: ``values`` ``(T, N, F)``, ``names`` (F feature names), ``index`` (T dates),
    ``columns`` (N symbols).
    """

    values: np.ndarray
    names: list
    index: pd.DatetimeIndex
    columns: pd.Index

    def to_dict(self) -> dict[str, pd.DataFrame]:
        """name -> ``(T, N)`` DataFrame."""
        return {n: pd.DataFrame(self.values[:, :, i], index=self.index, columns=self.columns) for i, n in enumerate(self.names)}

    def to_frame(self) -> pd.DataFrame:
        """Tidy long frame: one row per (date, symbol), one column per feature."""
        T, N, F = self.values.shape
        idx = pd.MultiIndex.from_product([self.index, self.columns], names=["date", "symbol"])
        return pd.DataFrame(self.values.reshape(T * N, F), index=idx, columns=self.names)

    def select(self, names) -> FeatureArray:
        """A subset of the features, in the given order."""
        pos = [self.names.index(n) for n in names]
        return FeatureArray(self.values[:, :, pos], list(names), self.index, self.columns)



def feature_set(name: str, frames: dict[str, pd.DataFrame] | pd.DataFrame) -> FeatureArray:
    """Compute a named feature set.

    Parameters
    ----------
    name : ``"dmn"`` or ``"bocpd"`` (need ``close``), or ``"ldtm"`` (needs ``open, high, low, close, volume``).
    frames : dict of aligned ``(T, N)`` frames by field (e.g. :func:`kit.data.wide_fields`), or a
        single close frame for ``dmn``.

    Returns
    -------
    FeatureArray with ``values`` ``(T, N, F)`` float64.

    Raises
    ------
    ValueError
        Unknown set name, missing field, or frames not aligned.
    """
    if isinstance(frames, pd.DataFrame):
        frames = {"close": frames}
    sp = spec(name)
    need = sp.fields
    missing = [f for f in need if f not in frames]
    if missing:
        raise ValueError(f"feature set {name!r} needs fields {list(need)}; missing {missing}")
    ref = frames["close"]
    for f in need:
        if not (frames[f].index.equals(ref.index) and frames[f].columns.equals(ref.columns)):
            raise ValueError(f"field {f!r} is not aligned with 'close' (same dates and symbols needed)")
    arrays = [np.ascontiguousarray(frames[f].to_numpy(dtype="float64")) for f in need]
    values = sp.batch(*arrays)
    return FeatureArray(values, list(sp.names), ref.index, ref.columns)



def dmn_features(close: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The eight DMN inputs as name -> ``(T, N)`` DataFrame (order of ``FEATURE_SETS['dmn'].names``)."""
    return feature_set("dmn", close).to_dict()



def stack_features(features: dict[str, pd.DataFrame]) -> tuple[np.ndarray, list[str]]:
    """Stack named ``(T, N)`` frames into one ``(T, N, F)`` float32 array and its feature names.

    Raises
    ------
    ValueError
        The frames are not aligned on the same index and columns (names the first that differs).
    """
    names = list(features)
    first = features[names[0]]
    for name in names[1:]:
        f = features[name]
        if not (f.index.equals(first.index) and f.columns.equals(first.columns)):
            raise ValueError(f"feature {name!r} is not aligned with {names[0]!r}")
    arr = np.stack([features[n].to_numpy(dtype="float64") for n in names], axis=-1).astype(np.float32)
    return arr, names




TREE_LDTM_FEATURES = ("log_ret_1", "log_ret_5", "rsi_14", "ma_ratio_5", "ma_ratio_10", "ma_ratio_20")
"""The scale-free inputs of the ``ldtm`` set that the tree models use (raw price and volume levels are
left out: pooled over symbols, a tree would split on a stock's price level)."""



def tree_features(frames: dict[str, pd.DataFrame] | pd.DataFrame) -> FeatureArray:
    """The tabular inputs of the gradient-boosted tree models (seed 004), ``(T, N, F)``: the 8 DMN
    inputs and, when ``frames`` has every OHLCV field, the 6 scale-free per-ticker indicators of the
    ``ldtm`` set (:data:`TREE_LDTM_FEATURES`); with a close frame only, the DMN inputs alone.

    Every value at t uses prices up to t. Returns a :class:`FeatureArray` labelled like ``close``.
    """
    if isinstance(frames, pd.DataFrame):
        frames = {"close": frames}
    dmn = feature_set("dmn", frames)
    if not all(f in frames for f in FEATURE_SETS["ldtm"].fields):
        return dmn
    per_ticker = feature_set("ldtm", frames).select(TREE_LDTM_FEATURES)
    return FeatureArray(np.concatenate([dmn.values, per_ticker.values], axis=2), dmn.names + list(per_ticker.names), dmn.index, dmn.columns)
