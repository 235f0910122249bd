"""Foundation models (:mod:`kit.models.foundation`) on the kit's walk-forward: batched quantile
forecasts over a ``(T, N)`` price frame, short fine-tuning on the training folds, and the
walk-forward experiment a notebook runs.

The contract is the per-ticker LSTM's (:func:`kit.training.walk_forward_ldtm`): the same splits and
21-day embargo (:func:`kit.training.walk_forward_splits` with ``horizon = max(horizons)``), a
forecast per horizon 1, 5 and 21 for every symbol and decision date, and positions
``tanh(s * q50_1d / daily ex-ante vol)`` (:func:`kit.training.ldtm_positions`) with ``s`` fitted on
the fold's validation forecasts only (:func:`kit.training.position_scale`). What is added: the 10 %
and 90 % quantiles beside the median, and a result a notebook can register and record in the ledger
with the other models.

Zero-shot (the default) the pretrained weights never change, so every validation and test date is
forecast once. Fine-tuned (``fine_tune_config``), each fold starts again from the pretrained weights
and is trained for a few epochs on that fold's training windows with early stopping on its
validation windows (:func:`fine_tune`), so zero-shot and fine-tuned are both measurable.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..conventions import FORECAST_HORIZONS, TRADING_DAYS
from ..features import complete_windows, daily_returns, ex_ante_vol, sliding_windows
from ..models import MODEL_LABELS, pinball_loss, save_foundation
from ..models.foundation import (
    CHECKPOINTS,
    QUANTILES,
    ForecasterAdapter,
    FoundationDependencyError,
    MissingWeightsError,
    adapter_class,
    check_horizons,
    load_adapter,
)
from .splits import LeakageError, count_leakage, walk_forward_splits
from .trainer import TrainConfig, Trainer
from .walk_forward import WalkForwardResult, WalkForwardSettings, ldtm_positions, position_scale

__all__ = [
    "price_windows",
    "forecast_dates",
    "FineTuneConfig",
    "FineTuneResult",
    "fine_tune",
    "FoundationWalkForwardResult",
    "walk_forward_foundation",
    "FoundationSettings",
    "FoundationRun",
    "FINE_TUNED_SUFFIX",
]

FINE_TUNED_SUFFIX = "_ft"
"""Suffix of a fine-tuned model's name (``chronos_bolt_ft``) beside its zero-shot one."""


# ------------------------------------------------------------------------------------------------
# windows and batched forecasts over a (T, N) price array
# ------------------------------------------------------------------------------------------------


def _usable(close: np.ndarray) -> np.ndarray:
    return np.isfinite(close) & (close > 0)


def price_windows(close, start: int, end: int, context_length: int, steps: int, stride: int = 1, max_windows: int | None = None):
    """Training windows for fine-tuning: (context, future) price pairs for decision dates in
    ``[start, end)``.

    Parameters
    ----------
    close : ``(T, N)`` float array of adjusted closes (NaN where unknown).
    start, end : positions on the date axis (decision dates).
    context_length : L, closes up to and including the decision date t.
    steps : P, closes t+1 .. t+P after it (the targets: they must lie inside the block the windows
        train on, which the walk-forward's embargo guarantees).
    stride : keep every ``stride``-th decision date counted back from the last one.
    max_windows : keep at most this many windows, the most recent ones.

    Returns
    -------
    ``(context (S, L), future (S, P), where (S, 2))``: float64, float64, int64 (date index, symbol
    index); only windows whose L + P closes are all finite and positive.

    Raises
    ------
    ValueError
        Bad ``context_length``, ``steps``, ``stride`` or ``max_windows``, or ``close`` not 2-D.
    """
    for nm, v in (("context_length", context_length), ("steps", steps), ("stride", stride)):
        if int(v) != v or v < 1:
            raise ValueError(f"{nm} must be an integer >= 1, got {v!r}")
    if max_windows is not None and (int(max_windows) != max_windows or max_windows < 1):
        raise ValueError(f"max_windows must be an integer >= 1, got {max_windows!r}")
    close = np.asarray(close, dtype="float64")
    if close.ndim != 2:
        raise ValueError(f"close must be a (T, N) array, got shape {close.shape}")
    T = len(close)
    L, P = int(context_length), int(steps)
    empty = np.zeros((0, L)), np.zeros((0, P)), np.zeros((0, 2), np.int64)
    if T < L + P:
        return empty
    full = complete_windows(_usable(close), L + P)  # the L + P closes ending at t + P
    dates = np.arange(min(end, T - P) - 1, max(start, L - 1) - 1, -int(stride))[::-1]
    if len(dates) == 0:
        return empty
    di, si = np.nonzero(full[dates + P])
    if max_windows is not None and len(di) > max_windows:
        keep = np.sort(np.argsort(-dates[di], kind="stable")[: int(max_windows)])
        di, si = di[keep], si[keep]
    t = dates[di]
    w = sliding_windows(close[:, :, None], L + P)[t - L + 1, si, :, 0]  # (S, L + P)
    return np.ascontiguousarray(w[:, :L]), np.ascontiguousarray(w[:, L:]), np.stack([t, si], axis=1).astype(np.int64)


def forecast_dates(
    adapter: ForecasterAdapter,
    close,
    dates,
    context_length: int,
    horizons=FORECAST_HORIZONS,
    progress: bool = False,
    return_crossings: bool = False,
):
    """Quantile forecasts of every symbol at the given decision dates, batched over (date, symbol).

    Parameters
    ----------
    adapter : a :class:`kit.models.foundation.ForecasterAdapter`.
    close : ``(T, N)`` adjusted closes (NaN where unknown).
    dates : ``(D,)`` positions on the date axis.
    context_length : L closes ending at each date (no later close is read).
    horizons : forecast horizons in trading days.

    Returns
    -------
    ``(D, N, H, 3)`` float64 return quantiles (0.1, 0.5, 0.9); NaN where the L closes are not all
    finite and positive (never a forecast from filled-in prices). ``adapter.last_crossings`` is set
    to the number of rearranged (date, symbol, horizon) forecasts; with ``return_crossings`` the
    result is ``(forecasts, crossings)`` with ``crossings`` ``(D,)`` int, that number per date.

    Raises
    ------
    ValueError
        ``context_length`` below the model's minimum, bad horizons.
    """
    close = np.asarray(close, dtype="float64")
    dates = np.asarray(dates, dtype=np.int64)
    L = int(context_length)
    if L < adapter.min_context:
        raise ValueError(f"context_length={L} is shorter than {adapter.model_name}'s minimum {adapter.min_context}")
    hs = check_horizons(horizons, adapter.max_horizon)
    out = np.full((len(dates), close.shape[1], len(hs), len(adapter.quantiles)), np.nan)
    per_date = np.zeros(len(dates), np.int64)
    di, si = np.nonzero(complete_windows(_usable(close), L)[dates]) if len(dates) else (np.zeros(0, int), np.zeros(0, int))
    adapter.last_crossings = 0
    if len(di) == 0:
        return (out, per_date) if return_crossings else out
    win = sliding_windows(close[:, :, None], L)  # (T - L + 1, N, L, 1), a view
    chunk = max(adapter.batch_size, 1) * 8
    rng = range(0, len(di), chunk)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc=f"{adapter.model_name} forecasts", leave=False)
    crossings = 0
    for a in rng:
        d, s = di[a : a + chunk], si[a : a + chunk]
        out[d, s] = adapter.forecast(win[dates[d] - L + 1, s, :, 0], hs)
        crossings += adapter.last_crossings
        np.add.at(per_date, d, adapter.last_crossings_per_series)
    adapter.last_crossings = crossings
    return (out, per_date) if return_crossings else out


# ------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------


@dataclass
class FineTuneConfig:
    """Settings of :func:`fine_tune` and of the windows :func:`walk_forward_foundation` cuts.

    The optimiser, cosine schedule, gradient clipping, early stopping and best-weight restore are
    :class:`kit.training.Trainer`'s; ``lr`` defaults to 1e-5 (pretrained weights move little).
    ``window_stride``: decision dates between training windows (consecutive windows share L - 1
    closes); ``max_train_windows`` / ``max_val_windows``: the most recent windows kept per fold.
    """

    epochs: int = 5
    patience: int = 2
    lr: float = 1e-5
    weight_decay: float = 0.0
    batch_size: int = 32
    max_grad_norm: float = 1.0
    window_stride: int = 5
    max_train_windows: int = 4096
    max_val_windows: int = 1024
    seed: int = 0
    device: str = "cpu"

    def train_config(self) -> TrainConfig:
        """The :class:`kit.training.TrainConfig` of these settings (fp32, cosine schedule)."""
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm, patience=self.patience, seed=self.seed, cosine=True,
            device=self.device, amp=False,
        )


@dataclass
class FineTuneResult:
    """Outcome of :func:`fine_tune`: validation pinball loss before (zero-shot) and after, the best
    epoch (-1: the pretrained weights were kept), epochs run and the per-epoch history
    (``epoch, train_loss, val_loss``)."""

    val_loss_zero_shot: float
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list = field(default_factory=list)


class _ReturnQuantiles(nn.Module):
    """``(B, L)`` relative prices -> ``(B, P, Q)`` quantiles of the simple returns over steps 1..P."""

    def __init__(self, adapter: ForecasterAdapter, steps: int):
        super().__init__()
        self.net = adapter.model
        self._adapter = [adapter]  # not a submodule
        self.steps = steps

    def forward(self, x):
        return self._adapter[0].quantile_path(x)[:, : self.steps] - 1.0


def _relative(windows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ctx, fut = (np.asarray(a, dtype="float64") for a in windows)
    if ctx.ndim != 2 or fut.ndim != 2 or len(ctx) != len(fut):
        raise ValueError(f"windows must be (context (S, L), future (S, P)) arrays, got shapes {ctx.shape} and {fut.shape}")
    bad = ~_usable(ctx)
    if bad.any():
        raise ValueError(f"context windows must hold positive finite prices ({int(bad.sum())} bad value(s))")
    last = ctx[:, -1:]
    y = fut / last - 1.0
    mask = np.isfinite(y)
    return (ctx / last).astype(np.float32), np.nan_to_num(y, nan=0.0).astype(np.float32), mask


def fine_tune(adapter: ForecasterAdapter, train, val, *, epochs: int | None = None, patience: int | None = None,
              config: FineTuneConfig | None = None) -> FineTuneResult:
    """Fine-tune an adapter's model in place on price windows, early-stopped on validation windows.

    The loss is the pinball loss (:func:`kit.models.pinball_loss`, Koenker & Bassett, 1978) over all
    the model's quantile levels and every step 1..P of the simple return path
    ``close_{t+k} / close_t - 1``; training is :class:`kit.training.Trainer` (AdamW, cosine
    schedule, clipping, early stopping after ``patience`` epochs without a better validation loss,
    best weights restored).

    Parameters
    ----------
    adapter : a :class:`kit.models.foundation.ForecasterAdapter` (its model is changed; copy it
        first to keep the pretrained one).
    train, val : ``(context (S, L), future (S, P))`` price windows, e.g. from :func:`price_windows`
        on the training and validation blocks of a walk-forward fold; P <= ``adapter.max_horizon``.
    epochs, patience : override ``config``'s.
    config : :class:`FineTuneConfig` (default settings when None).

    Returns
    -------
    :class:`FineTuneResult`. When no epoch beats the starting weights' validation loss, the starting
    weights are kept (``best_epoch = -1``, ``best_val_loss = val_loss_zero_shot``, ``fine_tuned``
    stays False): early stopping that may also stop at epoch 0.

    Raises
    ------
    ValueError
        Empty or malformed windows, or P above the model's prediction length.
    """
    cfg = copy.copy(config or FineTuneConfig())
    if epochs is not None:
        cfg.epochs = int(epochs)
    if patience is not None:
        cfg.patience = int(patience)
    if cfg.epochs < 1 or cfg.patience < 1:
        raise ValueError(f"epochs and patience must be >= 1, got {cfg.epochs} and {cfg.patience}")
    Xt, yt, mt = _relative(train)
    Xv, yv, mv = _relative(val)
    if len(Xt) == 0 or len(Xv) == 0:
        raise ValueError(f"fine_tune needs training and validation windows, got {len(Xt)} and {len(Xv)}")
    P = yt.shape[1]
    if yv.shape[1] != P or Xv.shape[1] != Xt.shape[1]:
        raise ValueError(f"train and val windows disagree: {Xt.shape}/{yt.shape} vs {Xv.shape}/{yv.shape}")
    if P > adapter.max_horizon:
        raise ValueError(f"future windows of {P} steps exceed the model's prediction length {adapter.max_horizon}")
    levels = adapter.model_quantiles

    def loss_fn(out, y, mask):
        return pinball_loss(out, y, mask, levels)

    trainer = Trainer(cfg.train_config(), loss_fn=loss_fn)
    wrapper = _ReturnQuantiles(adapter, P).to(trainer.device)
    before = trainer.evaluate(wrapper, *(torch.as_tensor(a).to(trainer.device) for a in (Xv, yv, mv)), batch=256)
    start_state = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
    res = trainer.fit(wrapper, (Xt, yt, mt), (Xv, yv, mv))
    adapter.model.eval()
    if not res.best_val_loss < before:  # no epoch beat the starting weights on validation: keep them
        adapter.model.load_state_dict(start_state)
        return FineTuneResult(before, before, -1, res.epochs_run, res.history)
    adapter.fine_tuned = True
    return FineTuneResult(before, res.best_val_loss, res.best_epoch, res.epochs_run, res.history)


# ------------------------------------------------------------------------------------------------
# walk-forward
# ------------------------------------------------------------------------------------------------


@dataclass
class FoundationWalkForwardResult(WalkForwardResult):
    """:class:`kit.training.WalkForwardResult` plus the quantile forecasts.

    ``forecasts`` holds the median (q50) ``{h: (T_test, N)}``; ``quantile_forecasts`` holds
    ``{q: {h: (T_test, N) DataFrame}}`` for q in (0.1, 0.5, 0.9); ``features`` is None (the input is
    the close itself), ``last_model`` the last fold's torch module and ``adapter`` the last fold's
    adapter (fine-tuned or not).
    """

    quantile_forecasts: dict = None
    adapter: ForecasterAdapter = None


def walk_forward_foundation(
    close: pd.DataFrame,
    adapter: ForecasterAdapter,
    *,
    test_start,
    test_size: int = 252,
    test_end=None,
    val_fraction: float = 0.1,
    context_length: int = 512,
    horizons=FORECAST_HORIZONS,
    train_start=None,
    min_train: int = 252,
    fine_tune_config: FineTuneConfig | None = None,
    name: str | None = None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = False,
) -> FoundationWalkForwardResult:
    """A foundation model on the kit's walk-forward: quantile forecasts and positions per test block.

    Folds are :func:`kit.training.walk_forward_splits` with ``horizon = max(horizons)`` (the same
    splits and embargo as :func:`kit.training.walk_forward_ldtm`); each fold's leakage count must be
    0. Zero-shot (``fine_tune_config=None``) the model never changes, so every decision date is
    forecast once. With ``fine_tune_config`` each fold starts again from the given (pretrained)
    weights, is fine-tuned by :func:`fine_tune` on that fold's training windows
    (:func:`price_windows`, future path of ``max(horizons)`` steps, which the split's embargo keeps
    out of the validation block) with early stopping on its validation windows, and forecasts that
    fold's validation and test dates.

    Positions: :func:`kit.training.ldtm_positions` on the 1-day median forecast divided by the daily
    ex-ante volatility (:func:`kit.features.ex_ante_vol` / sqrt(252)), with the scale fitted on the
    fold's validation forecasts only (:func:`kit.training.position_scale`).

    Parameters
    ----------
    close : ``(T, N)`` DataFrame of adjusted closes (DatetimeIndex, symbols as columns; NaN where a
        symbol is not listed).
    adapter : a :class:`kit.models.foundation.ForecasterAdapter` (not modified; fine-tuning works on
        copies).
    context_length : closes per context, ending at the decision date (1 is the date itself).
        A date whose context is not complete has no forecast and no position (NaN).
    horizons : forecast horizons in trading days; must include 1 (the positions' horizon).
    name : the result's model name (default the catalogue name, plus ``_ft`` when fine-tuned).
    checkpoint_dir : when given, the last fold's model is written there (``{name}_foldNN.pt``,
        :func:`kit.models.save_foundation`: a reference to the weights folder when zero-shot, the
        tuned state dict when fine-tuned; earlier folds' tuned weights, hundreds of MB each for the
        published sizes, are not kept) and its path recorded in that fold's ``checkpoint`` column,
        so :func:`kit.store.registry.register_walk_forward` can register the result.
    data_sha256 : recorded in the checkpoint.
    Others as :func:`kit.training.walk_forward_splits`.

    Returns
    -------
    :class:`FoundationWalkForwardResult`: ``positions`` ``(T_test, N)``, ``forecasts`` (median)
    and ``quantile_forecasts`` per horizon, one ``folds`` row per fold (dates, leakage rows,
    forecasts made, position scale, test forecasts whose raw quantiles crossed and were
    rearranged, fine-tuning losses, seconds; zero-shot, the forecasting time of all folds is in the
    first row's ``forecast_seconds_all_folds``) and the fine-tuning curves in ``history``.

    Raises
    ------
    LeakageError
        A fold's leakage count is not 0.
    ValueError
        ``close`` not a DataFrame with a DatetimeIndex, bad ``context_length`` or horizons, a fold
        without windows to fine-tune on.
    """
    if not isinstance(close, pd.DataFrame) or not isinstance(close.index, pd.DatetimeIndex):
        raise ValueError(f"close must be a (T, N) DataFrame with a DatetimeIndex, got {type(close).__name__}")
    if isinstance(context_length, bool) or int(context_length) != context_length or context_length < adapter.min_context:
        raise ValueError(f"context_length must be an integer >= {adapter.min_context} for {adapter.model_name}, got {context_length!r}")
    L = int(context_length)
    hs = check_horizons(horizons, adapter.max_horizon)
    if 1 not in hs:
        raise ValueError(f"horizons must include 1 (positions follow the 1-day forecast), got {horizons!r}")
    H = max(hs)
    name = name or adapter.name + (FINE_TUNED_SUFFIX if fine_tune_config is not None else "")
    _ = adapter.weights_sha256  # hashed once here, before the folds' copies (a checkpoint records it)
    c = close.to_numpy(dtype="float64")
    dates, symbols = close.index, close.columns
    vol = ex_ante_vol(daily_returns(close))
    daily_vol = vol.to_numpy(dtype="float64") / np.sqrt(float(TRADING_DAYS))
    splits = walk_forward_splits(dates, test_start, test_size, test_end, val_fraction, horizon=H, train_start=train_start, min_train=min_train)

    cache = None
    if fine_tune_config is None:  # the model is the same in every fold: forecast each date once
        need = np.unique(np.concatenate([np.r_[np.arange(*s.val), np.arange(*s.test)] for s in splits]))
        t0 = time.perf_counter()
        fc, crossed = forecast_dates(adapter, c, need, L, hs, progress=progress, return_crossings=True)
        cache = (need, fc, time.perf_counter() - t0, crossed)

    pos_blocks, logs, curves = [], [], []
    q_blocks = {q: {h: [] for h in hs} for q in QUANTILES}
    last = adapter
    med, h1 = QUANTILES.index(0.5), hs.index(1)
    iterator = splits
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(splits, desc=f"walk-forward folds ({name})")
    for split in iterator:
        t_start = time.perf_counter()
        leak = count_leakage(split)
        if leak:
            raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
        v0, v1 = split.val
        s0, s1 = split.test
        info = split.describe(dates)
        info.update(model=name, leakage_rows=leak, context_length=L)
        if cache is None:
            model = copy.deepcopy(adapter)
            ft = fine_tune_config
            tr = price_windows(c, *split.train, L, H, ft.window_stride, ft.max_train_windows)
            va = price_windows(c, v0, v1, L, H, ft.window_stride, ft.max_val_windows)
            if len(tr[0]) == 0 or len(va[0]) == 0:
                raise ValueError(f"fold {split.fold}: no complete {L}+{H}-day windows to fine-tune on (train {len(tr[0])}, val {len(va[0])})")
            res = fine_tune(model, tr[:2], va[:2], config=ft)
            info.update(
                fine_tuned=model.fine_tuned, train_windows=len(tr[0]), val_windows=len(va[0]), val_loss_zero_shot=res.val_loss_zero_shot,
                val_loss=res.best_val_loss, best_epoch=res.best_epoch, epochs_run=res.epochs_run,
            )
            curves.extend({"fold": split.fold, "model": name, **h} for h in res.history)
            fv = forecast_dates(model, c, np.arange(v0, v1), L, hs)
            fts = forecast_dates(model, c, np.arange(s0, s1), L, hs)
            crossings = model.last_crossings
            last = model
        else:
            need, fc, _, crossed = cache
            fv = fc[np.searchsorted(need, np.arange(v0, v1))]
            k = np.searchsorted(need, np.arange(s0, s1))
            fts = fc[k]
            crossings = crossed[k].sum()
            info.update(fine_tuned=False)
        scale = position_scale(fv[:, :, h1, med], daily_vol[v0:v1])
        pos = ldtm_positions(fts[:, :, h1, med], daily_vol[s0:s1], scale)
        test_dates = dates[s0:s1]
        pos_blocks.append(pd.DataFrame(pos, index=test_dates, columns=symbols))
        for qi, q in enumerate(QUANTILES):
            for hi, h in enumerate(hs):
                q_blocks[q][h].append(pd.DataFrame(fts[:, :, hi, qi], index=test_dates, columns=symbols))
        info.update(
            test_forecasts=int(np.isfinite(fts[:, :, h1, med]).sum()),
            val_forecasts=int(np.isfinite(fv[:, :, h1, med]).sum()),
            position_scale=scale,
            crossings_rearranged=int(crossings),
            seconds=round(time.perf_counter() - t_start, 2),
        )
        logs.append(info)
    if cache is not None and logs:
        logs[0]["forecast_seconds_all_folds"] = round(cache[2], 2)
    if checkpoint_dir is not None and logs:
        info = logs[-1]
        info["checkpoint"] = str(save_foundation(
            Path(checkpoint_dir) / f"{name}_fold{int(info['fold']):02d}.pt", last, data_sha256=data_sha256,
            train_period=(info["train_start"], info["val_end"]),
            extra={"fold": int(info["fold"]), "position_scale": info["position_scale"], "context_length": L,
                   "fine_tune": asdict(fine_tune_config) if fine_tune_config is not None else None},
        ))
    quantile_forecasts = {q: {h: pd.concat(b) for h, b in d.items()} for q, d in q_blocks.items()}
    config = {
        "model": name,
        "architecture": adapter.card(),
        "test_start": str(test_start),
        "test_end": str(test_end) if test_end is not None else None,
        "test_size": test_size,
        "val_fraction": val_fraction,
        "context_length": L,
        "horizons": list(hs),
        "quantiles": list(QUANTILES),
        "input": "prices (adjusted close), divided by the close at the decision date",
        "fine_tune": asdict(fine_tune_config) if fine_tune_config is not None else None,
    }
    return FoundationWalkForwardResult(
        positions=pd.concat(pos_blocks),
        folds=pd.DataFrame(logs),
        feature_names=["close"],
        ex_ante_vol=vol,
        config=config,
        history=pd.DataFrame(curves, columns=["fold", "model", "epoch", "train_loss", "val_loss"]),
        last_model=last.model,
        features=None,
        forecasts=quantile_forecasts[0.5],
        quantile_forecasts=quantile_forecasts,
        adapter=last,
    )


# ------------------------------------------------------------------------------------------------
# the notebook's entry point
# ------------------------------------------------------------------------------------------------


@dataclass
class FoundationRun:
    """What :meth:`FoundationSettings.run` gives a notebook: ``results`` (model name ->
    :class:`FoundationWalkForwardResult`, zero-shot as ``chronos_bolt``, fine-tuned as
    ``chronos_bolt_ft``), ``labels`` (model name -> report label) and ``skipped`` (one row per model
    not run: ``model, checkpoint, reason``; the reason names the missing folder and the download
    command, or the missing extra)."""

    results: dict
    labels: dict
    skipped: pd.DataFrame


@dataclass
class FoundationSettings:
    """The foundation-model keys of a profile (``20_train``'s parameters), checked.

    Attributes (profile keys)
    -------------------------
    foundation_models : models to add to the comparison: catalogue names (``chronos_bolt``,
        ``timesfm``, read from their default checkpoint folders) or checkpoint folder names of
        :data:`kit.models.foundation.CHECKPOINTS` (e.g. ``chronos-bolt-base``). Empty: none.
    foundation_fine_tune : also fine-tune each model on every fold's training windows (off by
        default: zero-shot only).
    foundation_epochs : maximum fine-tuning epochs per fold (early stopping on validation).
    foundation_context_length : closes per context (trading days ending at the decision date).
    model_dir : the weights folder; empty: ``$KIT_MODEL_DIR``, else ``<state dir>/models``
        (:func:`kit.paths.weights_dir`).
    """

    foundation_models: tuple = ()
    foundation_fine_tune: bool = False
    foundation_epochs: int = 5
    foundation_context_length: int = 512
    model_dir: str = ""

    @classmethod
    def from_params(cls, params, where: str = "foundation settings") -> FoundationSettings:
        """Pick this class's fields from ``params`` (e.g. a notebook's ``globals()``; other keys are
        ignored) and check them.

        Raises
        ------
        ValueError
            A value of the wrong type or out of range, or an unknown model name (each named).
        """
        import dataclasses

        kw = {f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params}
        models = kw.get("foundation_models", ())
        if isinstance(models, str) or not isinstance(models, list | tuple):
            raise ValueError(f"{where}: foundation_models must be a list of names, got {models!r}")
        for m in models:
            if not isinstance(m, str):
                raise ValueError(f"{where}: foundation_models names {m!r}, not a name")
            try:
                adapter_class(m)
            except ValueError as exc:
                raise ValueError(f"{where}: foundation_models: {exc}") from None
        if len(set(models)) != len(models):
            raise ValueError(f"{where}: foundation_models lists a model twice: {list(models)}")
        kw["foundation_models"] = tuple(models)
        if not isinstance(kw.get("foundation_fine_tune", False), bool):
            raise ValueError(f"{where}: foundation_fine_tune must be true or false, got {kw['foundation_fine_tune']!r}")
        for key in ("foundation_epochs", "foundation_context_length"):
            v = kw.get(key, 1 if key == "foundation_epochs" else 2)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "foundation_epochs" else 2):
                raise ValueError(f"{where}: {key} must be an integer >= {1 if key == 'foundation_epochs' else 2}, got {v!r}")
        if not isinstance(kw.get("model_dir", ""), str):
            raise ValueError(f"{where}: model_dir must be a string (a folder), got {kw['model_dir']!r}")
        return cls(**kw)

    @staticmethod
    def result_name(model: str) -> str:
        """The registry name of a model of ``foundation_models``: the catalogue name for a
        catalogue name or its default checkpoint, else the checkpoint folder name in lower case with
        ``-`` and ``.`` as ``_`` (``chronos-bolt-base`` -> ``chronos_bolt_base``)."""
        cls = adapter_class(model)
        if model == cls.name or model == cls.default_checkpoint:
            return cls.name
        return model.lower().replace("-", "_").replace(".", "_")

    def run(self, close: pd.DataFrame, walk_forward: WalkForwardSettings, *, checkpoint_dir=None, data_sha256: str = "",
            progress: bool = True) -> FoundationRun:
        """Run every model of :attr:`foundation_models` whose weights are present on ``close``
        walk-forward (:func:`walk_forward_foundation` with the test dates, block size and validation
        fraction of ``walk_forward``), zero-shot and, with :attr:`foundation_fine_tune`, fine-tuned
        (:class:`FineTuneConfig` with :attr:`foundation_epochs` and ``walk_forward.seed``).

        A model whose weights folder is missing, or all of them when the ``[foundation]`` extra is
        not installed, is skipped with the reason in :attr:`FoundationRun.skipped`; nothing is
        downloaded.
        """
        results, labels, skipped = {}, {}, []
        for model in self.foundation_models:
            cls = adapter_class(model)
            checkpoint = model if model in CHECKPOINTS else cls.default_checkpoint
            try:
                adapter = load_adapter(model, self.model_dir or None)
            except (MissingWeightsError, FoundationDependencyError) as exc:
                skipped.append({"model": model, "checkpoint": checkpoint, "reason": str(exc)})
                continue
            base = self.result_name(model)
            label = MODEL_LABELS[cls.name] + ("" if base == cls.name else f" ({checkpoint})")
            common = dict(test_start=walk_forward.test_start, test_size=walk_forward.test_size, val_fraction=walk_forward.val_fraction,
                          context_length=self.foundation_context_length, checkpoint_dir=checkpoint_dir, data_sha256=data_sha256,
                          progress=progress)
            results[base] = walk_forward_foundation(close, adapter, name=base, **common)
            labels[base] = f"{label} zero-shot"
            if self.foundation_fine_tune:
                ft = FineTuneConfig(epochs=self.foundation_epochs, seed=walk_forward.seed)
                results[base + FINE_TUNED_SUFFIX] = walk_forward_foundation(close, adapter, name=base + FINE_TUNED_SUFFIX,
                                                                            fine_tune_config=ft, **common)
                labels[base + FINE_TUNED_SUFFIX] = f"{label} fine-tuned"
        return FoundationRun(results, labels, pd.DataFrame(skipped, columns=["model", "checkpoint", "reason"]))
