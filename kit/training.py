"""Walk-forward splits, sequence building, the Trainer and the DMN walk-forward experiment.

Time indices below are positions on the ``(T,)`` date axis of the wide frames. A sample at decision
date t uses features up to t and a target that depends on prices up to ``t + horizon``. A split is
leak-free when no training or validation sample's target reaches into the test block (and no
training sample's target reaches into the validation block): the kit leaves an embargo of
``horizon`` dates before each boundary and counts the rows that break the rule.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ._atomic import atomic_path
from .features import feature_set, next_day_target
from .losses import sharpe_loss
from .models import DeepMomentumLSTM, DMNConfig

__all__ = [
    "LeakageError",
    "Split",
    "walk_forward_splits",
    "count_leakage",
    "make_sequences",
    "rolling_windows",
    "TrainConfig",
    "Trainer",
    "predict_positions",
    "save_checkpoint",
    "load_checkpoint",
    "WalkForwardResult",
    "walk_forward_dmn",
    "set_seed",
]


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


def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


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


def count_leakage(split: Split, valid: np.ndarray | None = None) -> int:
    """Rows whose target overlaps a later block: training rows with ``t + horizon >= val start`` or
    ``>= test start``, and validation rows with ``t + horizon >= test start``.

    With ``valid`` (a ``(T, N)`` bool array of usable samples) rows are (date, symbol) pairs;
    without it, dates. A correct split gives 0.
    """
    h = split.horizon
    train = np.arange(*split.train)
    val = np.arange(*split.val)
    bad_train = train[(train + h >= split.val[0]) | (train + h >= split.test[0])]
    bad_val = val[val + h >= split.test[0]]
    if valid is None:
        return int(len(bad_train) + len(bad_val))
    return int(valid[bad_train].sum() + valid[bad_val].sum())


def make_sequences(features: np.ndarray, target: np.ndarray, start: int, end: int, seq_len: int, min_valid: int = 1):
    """Cut ``[start, end)`` into non-overlapping, end-aligned windows of ``seq_len`` dates per symbol.

    Parameters
    ----------
    features : (T, N, F) float array, NaN where unknown.
    target : (T, N) float array, NaN where unknown.

    Returns
    -------
    X : (S, seq_len, F) float32 with NaN replaced by 0; y : (S, seq_len) float32 (NaN -> 0);
    mask : (S, seq_len) bool, True where every feature and the target are finite. Windows with fewer
    than ``min_valid`` valid steps are dropped. The leading remainder (fewer than ``seq_len``
    dates) is dropped so the most recent data is always used.
    """
    if features.ndim != 3 or target.shape != features.shape[:2]:
        raise ValueError(f"features (T, N, F) and target (T, N) disagree: {features.shape} vs {target.shape}")
    valid = np.isfinite(features).all(axis=-1) & np.isfinite(target)
    xs, ys, ms = [], [], []
    for stop in range(end, start + seq_len - 1, -seq_len):
        a = stop - seq_len
        xs.append(features[a:stop].transpose(1, 0, 2))
        ys.append(target[a:stop].T)
        ms.append(valid[a:stop].T)
    if not xs:
        F = features.shape[-1]
        return np.zeros((0, seq_len, F), np.float32), np.zeros((0, seq_len), np.float32), np.zeros((0, seq_len), bool)
    X = np.concatenate(xs)
    y = np.concatenate(ys)
    m = np.concatenate(ms)
    keep = m.sum(axis=1) >= min_valid
    X = np.nan_to_num(X[keep], nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    y = np.nan_to_num(y[keep], nan=0.0).astype(np.float32)
    return X, y, m[keep]


def rolling_windows(features: np.ndarray, start: int, end: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ending at each date in ``[start, end)`` for every symbol, for prediction.

    Returns ``X`` of shape ``((end - start) * N, seq_len, F)`` float32 (NaN -> 0, zero-padded before
    the first date) ordered date-major, and ``valid`` of shape ``(end - start, N)``: True where all
    features at the decision date are finite.
    """
    T, N, F = features.shape
    pad = max(0, seq_len - 1 - start)
    block = features[max(0, start - seq_len + 1) : end]
    if pad:
        block = np.concatenate([np.full((pad, N, F), np.nan, dtype=features.dtype), block])
    block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    win = np.lib.stride_tricks.sliding_window_view(block, seq_len, axis=0)  # (D, N, F, L)
    X = np.ascontiguousarray(win.transpose(0, 1, 3, 2)).reshape(-1, seq_len, F)
    valid = np.isfinite(features[start:end]).all(axis=-1)
    return X, valid


@dataclass
class TrainConfig:
    """Optimisation settings. ``epochs`` is the maximum; early stopping on the validation loss ends
    training after ``patience`` epochs without improvement and restores the best weights."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    patience: int = 10
    seed: int = 0


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list = field(default_factory=list)


class Trainer:
    """Minibatch training of a position model on the Sharpe loss, with early stopping.

    AdamW, gradient-norm clipping, shuffled minibatches from a seeded generator, validation loss on
    the whole validation set each epoch; the best epoch's weights are restored at the end. Runs on
    CPU in float32 (the device is taken from the model's parameters).
    """

    def __init__(self, config: TrainConfig):
        self.config = config

    def fit(self, model: torch.nn.Module, train, val) -> TrainResult:
        """Train ``model`` in place.

        Parameters
        ----------
        train, val : tuples ``(X, y, mask)`` from :func:`make_sequences` with shapes
            ``(S, L, F)``, ``(S, L)``, ``(S, L)``.

        Raises
        ------
        ValueError
            An empty training or validation set.
        """
        cfg = self.config
        Xtr, ytr, mtr = (torch.as_tensor(a) for a in train)
        Xva, yva, mva = (torch.as_tensor(a) for a in val)
        if len(Xtr) == 0 or mtr.sum() < 2:
            raise ValueError("training set is empty")
        if len(Xva) == 0 or mva.sum() < 2:
            raise ValueError("validation set is empty")
        set_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best = float("inf")
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_epoch, since, history = -1, 0, []
        epoch = 0
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(len(Xtr), generator=gen)
            losses = []
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                m = mtr[idx]
                if m.sum() < 2:
                    continue
                loss = sharpe_loss(model(Xtr[idx]), ytr[idx], m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                losses.append(float(loss.detach()))
            val_loss = self.evaluate(model, Xva, yva, mva)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"), "val_loss": val_loss})
            if val_loss < best - 1e-6:
                best, best_epoch, since = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since += 1
                if since >= cfg.patience:
                    break
        model.load_state_dict(best_state)
        model.eval()
        return TrainResult(best, best_epoch, epoch + 1, history)

    @staticmethod
    @torch.no_grad()
    def evaluate(model, X, y, mask) -> float:
        """Sharpe loss of ``model`` on a whole set, in eval mode (no dropout)."""
        model.eval()
        return float(sharpe_loss(model(X), y, mask))


@torch.no_grad()
def predict_positions(model: torch.nn.Module, features: np.ndarray, start: int, end: int, seq_len: int, batch: int = 4096) -> np.ndarray:
    """Positions for decision dates ``[start, end)``: the model's last-step output on the window of
    ``seq_len`` dates ending at each date. Returns ``(end - start, N)`` float64, NaN where the
    features at the decision date are not all finite."""
    model.eval()
    X, valid = rolling_windows(features, start, end, seq_len)
    out = []
    for i in range(0, len(X), batch):
        out.append(model(torch.as_tensor(X[i : i + batch]))[:, -1].numpy())
    pos = np.concatenate(out).astype(np.float64).reshape(end - start, features.shape[1]) if out else np.zeros((0, features.shape[1]))
    pos[~valid] = np.nan
    return pos


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path, model, *, feature_names, data_sha256, train_period, extra=None) -> Path:
    """Write a checkpoint atomically (temp file, then rename) carrying the model config, feature
    names, data sha256 and training period, so a model can be rebuilt and traced to its data."""
    path = Path(path)
    payload = {
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "feature_names": list(feature_names),
        "data_sha256": data_sha256,
        "train_period": list(train_period),
        "torch_version": torch.__version__,
        **(extra or {}),
    }
    _atomic_torch_save(payload, path)
    return path


def load_checkpoint(path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from :func:`save_checkpoint`'s file; returns ``(model, payload)``."""
    from .models import build_model

    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


@dataclass
class WalkForwardResult:
    """Stitched out-of-sample positions ``(T_test, N)`` and one log row per fold."""

    positions: pd.DataFrame
    folds: pd.DataFrame
    feature_names: list
    ex_ante_vol: pd.DataFrame
    config: dict


def walk_forward_dmn(
    close: pd.DataFrame,
    *,
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    seq_len: int = 63,
    target_vol: float = 0.15,
    hidden_size: int = 20,
    num_layers: int = 1,
    dropout: float = 0.1,
    train: TrainConfig | None = None,
    train_start=None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = True,
) -> WalkForwardResult:
    """Train the Deep Momentum LSTM walk-forward and return its stitched out-of-sample positions.

    Features are the DMN set (:func:`kit.features.feature_set` ``'dmn'``) and the target is
    ``target_vol / ex_ante_vol_t * r_{t+1}`` (:func:`kit.features.next_day_target`). For each fold
    of :func:`walk_forward_splits` a fresh model (seed ``train.seed + fold``) is trained on the
    training block, early-stopped on the validation block, checkpointed, and used to predict the
    test block. Only test-block predictions are returned.

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes; columns are symbols.

    Raises
    ------
    LeakageError
        A fold has a non-zero leakage count (cannot happen with :func:`walk_forward_splits`; checked
        anyway so that a change there cannot silently leak).
    """
    train = train or TrainConfig()
    fa = feature_set("dmn", close)
    X, names = fa.values.astype(np.float32), fa.names
    target_df, vol = next_day_target(close, target_vol=target_vol)
    y = target_df.to_numpy(dtype="float64")
    dates = close.index
    splits = walk_forward_splits(dates, test_start, test_size, test_end, val_fraction, horizon=1, train_start=train_start)
    valid = np.isfinite(X).all(axis=-1) & np.isfinite(y)
    logs, blocks = [], []
    iterator = splits
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(splits, desc="walk-forward folds")
    for split in iterator:
        leak = count_leakage(split, valid)
        if leak:
            raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
        t_start = time.perf_counter()
        tr = make_sequences(X, y, *split.train, seq_len)
        va = make_sequences(X, y, *split.val, min(seq_len, split.val[1] - split.val[0]))
        cfg = DMNConfig(n_features=len(names), hidden_size=hidden_size, num_layers=num_layers, dropout=dropout)
        set_seed(train.seed + split.fold)
        model = DeepMomentumLSTM(cfg)
        result = Trainer(TrainConfig(**{**asdict(train), "seed": train.seed + split.fold})).fit(model, tr, va)
        pos = predict_positions(model, X, *split.test, seq_len)
        blocks.append(pd.DataFrame(pos, index=dates[split.test[0] : split.test[1]], columns=close.columns))
        info = split.describe(dates)
        if checkpoint_dir is not None:
            ckpt = save_checkpoint(
                Path(checkpoint_dir) / f"dmn_fold{split.fold:02d}.pt",
                model,
                feature_names=names,
                data_sha256=data_sha256,
                train_period=(info["train_start"], info["val_end"]),
                extra={"fold": split.fold, "train_config": asdict(train)},
            )
            info["checkpoint"] = str(ckpt)
        info.update(
            leakage_rows=leak,
            train_samples=int(tr[2].sum()),
            val_samples=int(va[2].sum()),
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            val_sharpe=-result.best_val_loss,
            seconds=round(time.perf_counter() - t_start, 2),
        )
        logs.append(info)
    positions = pd.concat(blocks)
    config = {
        "test_start": str(test_start),
        "test_end": str(test_end) if test_end is not None else None,
        "test_size": test_size,
        "val_fraction": val_fraction,
        "seq_len": seq_len,
        "target_vol": target_vol,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "dropout": dropout,
        "train": asdict(train),
    }
    return WalkForwardResult(positions, pd.DataFrame(logs), names, vol, config)
