"""What a walk-forward returns, for every model family: :class:`WalkForwardResult` (stitched test-block
positions, fold logs, curves) and :class:`FoldPredictions` (one fold's validation and test
predictions, for stacking)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

__all__ = ["FoldPredictions", "WalkForwardResult"]


@dataclass
class FoldPredictions:
    """One fold's validation and test positions (or scores) as rows ``(date position, symbol
    position)`` on the full ``(T, N)`` axes.

    A stacking meta-learner (:func:`kit.training.trees.walk_forward_stack`) is fitted on ``val_*``
    only. Any model provides these: :func:`walk_forward` records its positions on each fold's
    validation and test dates, the tree walk-forwards their rows' positions.
    """

    fold: int
    val_date: np.ndarray
    val_symbol: np.ndarray
    val_positions: np.ndarray
    test_date: np.ndarray
    test_symbol: np.ndarray
    test_positions: np.ndarray

    @classmethod
    def from_arrays(cls, fold: int, val_positions: np.ndarray, test_positions: np.ndarray) -> FoldPredictions:
        """From two ``(T, N)`` arrays, NaN outside the fold's validation (resp. test) block."""
        v = np.asarray(val_positions, dtype="float64")
        t = np.asarray(test_positions, dtype="float64")
        vd, vs = np.nonzero(np.isfinite(v))
        td, ts = np.nonzero(np.isfinite(t))
        return cls(int(fold), vd, vs, v[vd, vs], td, ts, t[td, ts])

    def grid(self, which: str, shape: tuple) -> np.ndarray:
        """``(T, N)`` float64 array of the ``"val"`` or ``"test"`` values, NaN elsewhere."""
        g = np.full(shape, np.nan)
        d, s_, v = (self.val_date, self.val_symbol, self.val_positions) if which == "val" else (self.test_date, self.test_symbol, self.test_positions)
        g[d, s_] = v
        return g



@dataclass
class WalkForwardResult:
    """Stitched out-of-sample positions ``(T_test, N)``, one log row per fold (per member for an
    ensemble), the training curves, and the last fold's model (for interpretation plots).

    Tree and ranker models (:mod:`kit.training.trees`) also fill ``scores`` (the raw model outputs
    on the test blocks, ``(T_test, N)``: P(up), predicted target, raw score or ranking score) and
    every walk-forward fills ``fold_predictions`` (one :class:`FoldPredictions` per fold, for
    stacking)."""

    positions: pd.DataFrame
    folds: pd.DataFrame
    feature_names: list
    ex_ante_vol: pd.DataFrame
    config: dict
    history: pd.DataFrame = None
    last_model: torch.nn.Module = None
    features: np.ndarray = None
    forecasts: dict = None
    """Forecasters only (LDTM): ``{horizon: (T_test, N) DataFrame}`` of out-of-sample forecast
    returns ``close_{t+h} / close_t - 1`` made at each decision date t; ``None`` for position models."""
    scores: pd.DataFrame = None
    fold_predictions: list = None
    tasks: pd.DataFrame = None
    """One row per task that produced this result (``task`` key, ``stage`` fit, combine or
    ``tree:<model>`` for a tree or ranker's fold fits, ``model``, ``fold``, ``seconds``,
    ``cpu_seconds``, ``node``, ``pid``, ``threads``, ``attempt``); a task shared by two models appears
    in both results. None for results assembled in the driver without tasks (a stack's
    meta-learner, foundation models)."""
