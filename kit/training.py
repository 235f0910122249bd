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
    "resolve_device",
    "amp_settings",
    "predict_positions",
    "save_checkpoint",
    "load_checkpoint",
    "WalkForwardResult",
    "POSITION_MODELS",
    "make_position_model",
    "walk_forward",
    "walk_forward_dmn",
    "walk_forward_ldtm",
    "walk_forward_model",
    "ldtm_positions",
    "predict_forecasts",
    "explain_transformer",
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
    """Optimisation settings.

    AdamW (``lr``, ``weight_decay``) with cosine annealing of the learning rate over ``epochs``
    (``cosine``), gradient-norm clipping at ``max_grad_norm``; ``epochs`` is the maximum: early
    stopping on the validation loss ends training after ``patience`` epochs without improvement and
    restores the best weights. ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or
    ``"cuda"``. ``amp``: mixed precision on CUDA (bf16 where supported, else fp16 with a gradient
    scaler); on the CPU the same code path runs in plain fp32.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    patience: int = 10
    seed: int = 0
    cosine: bool = True
    device: str = "auto"
    amp: bool = True
    progress: bool = False


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU raises ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


def amp_settings(device: torch.device, enabled: bool = True) -> tuple[bool, torch.dtype, bool]:
    """(autocast on, autocast dtype, needs a GradScaler) for a device: bf16 on CUDA devices that
    support it, fp16 with a scaler on older ones, and fp32 (autocast off) on the CPU."""
    if not enabled or device.type != "cuda":
        return False, torch.float32, False
    if torch.cuda.is_bf16_supported():
        return True, torch.bfloat16, False
    return True, torch.float16, True


class Trainer:
    """Minibatch training of a model with early stopping, for CPU and CUDA through one code path.

    Parameters
    ----------
    config : :class:`TrainConfig`.
    loss_fn : ``loss_fn(output, y, mask) -> scalar``; default :func:`kit.losses.sharpe_loss`
        (position models). For forecasters use e.g. :func:`kit.losses.multi_horizon_mse`.
    """

    def __init__(self, config: TrainConfig, loss_fn=None):
        self.config = config
        self.loss_fn = loss_fn or sharpe_loss
        self.device = resolve_device(config.device)

    def fit(self, model: torch.nn.Module, train, val, on_epoch_end=None) -> TrainResult:
        """Train ``model`` in place (moved to the trainer's device).

        Parameters
        ----------
        train, val : tuples ``(X, y, mask)``: ``X`` ``(S, L, F)`` float32, ``y`` and ``mask`` of the
            model output's shape (``(S, L)`` for position models, ``(S, H)`` for forecasters).
        on_epoch_end : optional ``f(epoch, val_loss)`` called after each epoch (e.g. to report to an
            optuna trial, which may raise ``optuna.TrialPruned`` to stop a hopeless trial).

        Raises
        ------
        ValueError
            An empty training or validation set.
        """
        cfg = self.config
        dev = self.device
        Xtr, ytr, mtr = (torch.as_tensor(a) for a in train)
        Xva, yva, mva = (torch.as_tensor(a).to(dev) for a in val)
        if len(Xtr) == 0 or mtr.sum() < 2:
            raise ValueError("training set is empty")
        if len(Xva) == 0 or mva.sum() < 2:
            raise ValueError("validation set is empty")
        set_seed(cfg.seed)
        model.to(dev)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1)) if cfg.cosine else None
        use_amp, amp_dtype, use_scaler = amp_settings(dev, cfg.amp)
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        best = float("inf")
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_epoch, since, history = -1, 0, []
        epoch = 0
        epochs = range(cfg.epochs)
        if cfg.progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="epochs", leave=False)
        for epoch in epochs:
            model.train()
            order = torch.randperm(len(Xtr), generator=gen)
            losses = []
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                m = mtr[idx].to(dev)
                if m.sum() < 2:
                    continue
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    out = model(Xtr[idx].to(dev))
                loss = self.loss_fn(out.float(), ytr[idx].to(dev), m)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
            if sched is not None:
                sched.step()
            val_loss = self.evaluate(model, Xva, yva, mva)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"), "val_loss": val_loss})
            if on_epoch_end is not None:
                on_epoch_end(epoch, val_loss)
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

    @torch.no_grad()
    def evaluate(self, model, X, y, mask, batch: int = 8192) -> float:
        """Loss of ``model`` on a whole set in eval mode (no dropout), in float32."""
        model.eval()
        outs = [model(X[i : i + batch]).float() for i in range(0, len(X), batch)]
        return float(self.loss_fn(torch.cat(outs), y, mask))


@torch.no_grad()
def predict_positions(model: torch.nn.Module, features: np.ndarray, start: int, end: int, seq_len: int, batch: int = 4096) -> np.ndarray:
    """Positions for decision dates ``[start, end)``: the model's last-step output on the window of
    ``seq_len`` dates ending at each date. Returns ``(end - start, N)`` float64, NaN where the
    features at the decision date are not all finite."""
    model.eval()
    dev = next(model.parameters()).device
    X, valid = rolling_windows(features, start, end, seq_len)
    out = []
    for i in range(0, len(X), batch):
        out.append(model(torch.as_tensor(X[i : i + batch]).to(dev))[:, -1].float().cpu().numpy())
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


POSITION_MODELS = ("dmn_lstm", "momentum_transformer", "linear", "mlp")


def make_position_model(name: str, n_features: int, hidden_size: int = 20, dropout: float = 0.1, num_layers: int = 1, n_heads: int = 4) -> torch.nn.Module:
    """A position model from one flat set of hyperparameters: ``dmn_lstm`` (LSTM hidden size,
    layers, dropout), ``momentum_transformer`` (``d_model = hidden_size``, ``n_heads``, dropout),
    ``mlp`` (one hidden layer of ``hidden_size``), ``linear``.

    Raises
    ------
    ValueError
        Unknown name.
    """
    from .models import BaselineConfig, MomentumTransformer, PerStepBaseline, TransformerConfig

    if name == "dmn_lstm":
        return DeepMomentumLSTM(DMNConfig(n_features, hidden_size, num_layers, dropout))
    if name == "momentum_transformer":
        return MomentumTransformer(TransformerConfig(n_features, hidden_size, n_heads, dropout))
    if name == "mlp":
        return PerStepBaseline(BaselineConfig(n_features, hidden_size, dropout))
    if name == "linear":
        return PerStepBaseline(BaselineConfig(n_features, 0, 0.0))
    raise ValueError(f"model {name!r} is not a position model; known: {POSITION_MODELS + ('ensemble',)}")


@dataclass
class WalkForwardResult:
    """Stitched out-of-sample positions ``(T_test, N)``, one log row per fold (per member for an
    ensemble), the training curves, and the last fold's model (for interpretation plots)."""

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


def walk_forward(
    close: pd.DataFrame,
    *,
    model: str = "dmn_lstm",
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    seq_len: int = 63,
    target_vol: float = 0.15,
    hidden_size: int = 20,
    num_layers: int = 1,
    dropout: float = 0.1,
    n_heads: int = 4,
    members=("dmn_lstm", "momentum_transformer", "mlp"),
    ensemble_method: str = "stacked",
    train: TrainConfig | None = None,
    train_start=None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = True,
) -> WalkForwardResult:
    """Train a position model walk-forward on the DMN features; return its stitched out-of-sample
    positions.

    Features are the DMN set (:func:`kit.features.feature_set` ``'dmn'``) and the target is
    ``target_vol / ex_ante_vol_t * r_{t+1}`` (:func:`kit.features.next_day_target`), trained with the
    Sharpe loss. For each fold of :func:`walk_forward_splits` a fresh model (seed ``train.seed +
    fold``) is trained on the training block, early-stopped on the validation block, checkpointed,
    and used to predict the test block. Only test-block predictions are returned.

    ``model="ensemble"`` trains every model in ``members`` per fold and combines their positions
    with weights from :func:`kit.models.ensemble_weights` (``ensemble_method`` ``equal``,
    ``inverse_loss`` or ``stacked``), fitted on that fold's validation block only.

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes; columns are symbols.

    Raises
    ------
    LeakageError
        A fold has a non-zero leakage count (cannot happen with :func:`walk_forward_splits`; checked
        anyway so that a change there cannot silently leak).
    ValueError
        Unknown model name.
    """
    from .models import PositionEnsemble, ensemble_weights

    train = train or TrainConfig()
    names_to_train = list(members) if model == "ensemble" else [model]
    for name in names_to_train:
        if name not in POSITION_MODELS:
            raise ValueError(f"model {name!r} is not a position model; known: {POSITION_MODELS + ('ensemble',)}")
    fa = feature_set("dmn", close)
    X, names = fa.values.astype(np.float32), fa.names
    target_df, vol = next_day_target(close, target_vol=target_vol)
    y = target_df.to_numpy(dtype="float64")
    dates = close.index
    splits = walk_forward_splits(dates, test_start, test_size, test_end, val_fraction, horizon=1, train_start=train_start)
    valid = np.isfinite(X).all(axis=-1) & np.isfinite(y)
    logs, blocks, curves = [], [], []
    last_model = None
    iterator = splits
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(splits, desc="walk-forward folds")
    for split in iterator:
        leak = count_leakage(split, valid)
        if leak:
            raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
        tr = make_sequences(X, y, *split.train, seq_len)
        va = make_sequences(X, y, *split.val, min(seq_len, split.val[1] - split.val[0]))
        fitted, val_losses, val_pos = [], [], []
        for k, name in enumerate(names_to_train):
            t_start = time.perf_counter()
            seed = train.seed + split.fold + 1000 * k
            set_seed(seed)
            net = make_position_model(name, len(names), hidden_size, dropout, num_layers, n_heads)
            result = Trainer(TrainConfig(**{**asdict(train), "seed": seed})).fit(net, tr, va)
            info = split.describe(dates)
            info["model"] = name
            if checkpoint_dir is not None:
                ckpt = save_checkpoint(
                    Path(checkpoint_dir) / f"{name}_fold{split.fold:02d}.pt",
                    net,
                    feature_names=names,
                    data_sha256=data_sha256,
                    train_period=(info["train_start"], info["val_end"]),
                    extra={"fold": split.fold, "train_config": asdict(train), "seed": seed},
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
            curves.extend({"fold": split.fold, "model": name, **h} for h in result.history)
            fitted.append(net)
            val_losses.append(result.best_val_loss)
            if model == "ensemble" and ensemble_method == "stacked":
                val_pos.append(predict_positions(net, X, *split.val, seq_len))
        if model == "ensemble":
            w = ensemble_weights(
                val_losses,
                ensemble_method,
                val_positions=np.stack(val_pos) if val_pos else None,
                val_target=y[split.val[0] : split.val[1]],
            )
            net = PositionEnsemble(fitted, w)
            logs.append({**split.describe(dates), "model": "ensemble", "leakage_rows": leak, "weights": {n: round(float(v), 4) for n, v in zip(names_to_train, w, strict=True)}})
        else:
            net = fitted[0]
        pos = predict_positions(net, X, *split.test, seq_len)
        blocks.append(pd.DataFrame(pos, index=dates[split.test[0] : split.test[1]], columns=close.columns))
        last_model = net
    positions = pd.concat(blocks)
    config = {
        "model": model,
        "members": list(members) if model == "ensemble" else None,
        "ensemble_method": ensemble_method if model == "ensemble" else None,
        "test_start": str(test_start),
        "test_end": str(test_end) if test_end is not None else None,
        "test_size": test_size,
        "val_fraction": val_fraction,
        "seq_len": seq_len,
        "target_vol": target_vol,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "dropout": dropout,
        "n_heads": n_heads,
        "train": asdict(train),
    }
    return WalkForwardResult(positions, pd.DataFrame(logs), names, vol, config, pd.DataFrame(curves), last_model, X)


def walk_forward_dmn(close: pd.DataFrame, **kwargs) -> WalkForwardResult:
    """:func:`walk_forward` with ``model="dmn_lstm"`` (the Deep Momentum LSTM)."""
    return walk_forward(close, model="dmn_lstm", **kwargs)


def predict_forecasts(model: torch.nn.Module, features: np.ndarray, start: int, end: int, lookback: int, batch: int = 4096) -> np.ndarray:
    """Forecasts of one forecaster for decision dates ``[start, end)`` of one symbol.

    Parameters
    ----------
    model : a forecaster ``(B, L, F) -> (B, H)`` (e.g. :class:`kit.models.LDTMForecaster`).
    features : ``(T, F)`` float array of that symbol's features (NaN where unknown).
    start, end : positions on the date axis; lookback : window length L.

    Returns
    -------
    ``(end - start, H)`` float64; NaN where the window is incomplete or holds a non-finite value
    (never a forecast from zero-filled inputs).
    """
    T, F = features.shape
    pad = max(0, lookback - 1 - start)
    block = features[max(0, start - lookback + 1) : end].astype(np.float32)
    if pad:
        block = np.concatenate([np.full((pad, F), np.nan, np.float32), block])
    win = np.lib.stride_tricks.sliding_window_view(block, lookback, axis=0).transpose(0, 2, 1)  # (D, L, F)
    ok = np.isfinite(win).all(axis=(1, 2))
    H = len(model.config.horizons)
    out = np.full((end - start, H), np.nan)
    if ok.any():
        x = torch.from_numpy(np.ascontiguousarray(win[ok]))
        model.eval()
        dev = next(model.parameters()).device
        with torch.no_grad():
            pred = torch.cat([model(x[i : i + batch].to(dev)).float().cpu() for i in range(0, len(x), batch)])
        out[ok] = pred.numpy().astype(np.float64)
    return out


def ldtm_positions(forecast: np.ndarray, daily_vol: np.ndarray, scale: float) -> np.ndarray:
    """Positions in [-1, 1] from one-day return forecasts: ``tanh(scale * forecast / daily_vol)``.

    ``forecast / daily_vol`` is the forecast in units of the asset's ex-ante daily volatility (a
    z-score); ``scale`` maps a typical z-score to a moderate position. :func:`walk_forward_ldtm`
    sets ``scale = 1 / std(z)`` over the fold's validation forecasts (pooled over symbols), so
    nothing from the test block enters. NaN where the forecast or volatility is unknown or the
    volatility is not positive. Shapes: any, broadcast; float64.

    Raises
    ------
    ValueError
        ``scale`` not finite and positive.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale}")
    f = np.asarray(forecast, dtype="float64")
    v = np.asarray(daily_vol, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(np.isfinite(v) & (v > 0), f / v, np.nan)
    return np.tanh(scale * z)


def walk_forward_ldtm(
    frames: dict,
    *,
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    lookback: int = 30,
    hidden_size: int = 128,
    num_layers: int = 2,
    dropout: float = 0.2,
    horizons=(1, 5, 21),
    train: TrainConfig | None = None,
    path: str = "auto",
    sample_stride: int = 1,
    min_train_samples: int = 100,
    train_start=None,
    checkpoint_dir=None,
    data_sha256: str = "",
    progress: bool = True,
) -> WalkForwardResult:
    """Per-ticker multi-horizon LSTMs (LDTM, seed 003) trained walk-forward, one model per symbol
    and fold, all K symbols of a fold from one :func:`kit.batched.train_universe` call.

    Inputs are the 11 ``ldtm`` features (:func:`kit.features.feature_set`), windows of ``lookback``
    days min-max scaled per window inside the model; targets are forward simple returns over
    ``horizons`` (:func:`kit.features.forward_returns`), trained with the multi-horizon MSE. Splits
    come from :func:`walk_forward_splits` with ``horizon = max(horizons)`` (a 21-day embargo before
    validation and test blocks); each fold's leakage count must be 0. A symbol is trained in a fold
    when it has at least ``min_train_samples`` complete training windows and 2 validation windows;
    otherwise it has no position in that fold's test block (NaN = not live).

    Positions for the backtest: :func:`ldtm_positions` on the one-day forecast, scaled by the
    ex-ante daily volatility, with its scale fitted on the fold's validation forecasts only.

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames ``open, high, low, close, volume``
        (:func:`kit.data.wide_fields`), adjusted prices.
    sample_stride : keep every k-th training window (most recent first); consecutive windows
        overlap by ``lookback - 1`` days, so a stride > 1 trades little information for speed.
    path : :func:`kit.batched.train_universe` path (``auto``, ``batched`` or ``loop``).
    Others as :func:`walk_forward`.

    Returns
    -------
    :class:`WalkForwardResult` with ``positions`` ``(T_test, N)``, ``forecasts`` ``{h: (T_test,
    N)}``, one ``folds`` row per fold (symbols trained, samples, mean validation MSE, seconds) and
    the mean validation curve per fold in ``history``. Checkpoints (one file per fold holding every
    symbol's state dict, its symbol list, config, feature names, data sha256 and training period)
    go to ``checkpoint_dir`` when given.

    Raises
    ------
    LeakageError
        A fold has a non-zero leakage count.
    ValueError
        A missing field, bad ``sample_stride``/``min_train_samples``, or no symbol with enough data
        in some fold.
    """
    from .batched import train_universe
    from .features import daily_returns, ex_ante_vol, forward_returns, make_samples
    from .models import LDTMConfig

    train = train or TrainConfig()
    if int(sample_stride) != sample_stride or sample_stride < 1:
        raise ValueError(f"sample_stride must be an integer >= 1, got {sample_stride!r}")
    if min_train_samples < 2:
        raise ValueError(f"min_train_samples must be >= 2, got {min_train_samples!r}")
    horizons = tuple(int(h) for h in horizons)
    close = frames["close"] if "close" in frames else None
    fa = feature_set("ldtm", frames)
    X, names = fa.values, fa.names
    fwd = forward_returns(close, horizons).values
    vol = ex_ante_vol(daily_returns(close))
    daily_vol = vol.to_numpy(dtype="float64") / np.sqrt(252.0)
    dates, symbols = close.index, close.columns
    cfg = LDTMConfig(n_features=len(names), hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, horizons=horizons)
    splits = walk_forward_splits(dates, test_start, test_size, test_end, val_fraction, horizon=max(horizons), train_start=train_start)
    valid = np.isfinite(X).all(axis=-1) & np.isfinite(fwd).all(axis=-1)
    logs, pos_blocks, curves = [], [], []
    fc_blocks = {h: [] for h in horizons}
    iterator = splits
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(splits, desc="walk-forward folds (ldtm)")
    for split in iterator:
        t_start = time.perf_counter()
        leak = count_leakage(split, valid)
        if leak:
            raise LeakageError(f"fold {split.fold}: {leak} leakage rows")
        datasets, trained = [], []
        for j in range(len(symbols)):
            Xt, yt, _ = make_samples(X[:, j : j + 1], fwd[:, j : j + 1], lookback, *split.train)
            Xv, yv, _ = make_samples(X[:, j : j + 1], fwd[:, j : j + 1], lookback, *split.val)
            if sample_stride > 1:
                Xt, yt = Xt[::-1][::sample_stride][::-1], yt[::-1][::sample_stride][::-1]
            if len(Xt) >= min_train_samples and len(Xv) >= 2:
                datasets.append((Xt, yt, Xv, yv))
                trained.append(j)
        if not datasets:
            raise ValueError(f"fold {split.fold}: no symbol has {min_train_samples} training windows of {lookback} days")
        seeds = [train.seed + 1000 * split.fold + j for j in trained]
        fit = train_universe(datasets, cfg, train, path, seeds=seeds)
        t0, t1 = split.test
        v0, v1 = split.val
        test_fc = np.full((t1 - t0, len(symbols), len(horizons)), np.nan)
        z_val = []
        for model, j in zip(fit.models, trained, strict=True):
            test_fc[:, j] = predict_forecasts(model, X[:, j], t0, t1, lookback)
            fv = predict_forecasts(model, X[:, j], v0, v1, lookback)[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                z_val.append(fv / daily_vol[v0:v1, j])
        z = np.concatenate(z_val)
        z = z[np.isfinite(z)]
        sd = float(np.std(z)) if len(z) > 1 else 0.0
        scale = 1.0 / sd if sd > 0 else 1.0
        pos = ldtm_positions(test_fc[:, :, 0], daily_vol[t0:t1], scale)
        test_dates = dates[t0:t1]
        pos_blocks.append(pd.DataFrame(pos, index=test_dates, columns=symbols))
        for i, h in enumerate(horizons):
            fc_blocks[h].append(pd.DataFrame(test_fc[:, :, i], index=test_dates, columns=symbols))
        info = split.describe(dates)
        info.update(
            model="ldtm",
            leakage_rows=leak,
            symbols_trained=len(trained),
            train_samples=int(sum(len(d[0]) for d in datasets)),
            val_samples=int(sum(len(d[2]) for d in datasets)),
            best_epoch=float(np.mean([r.best_epoch for r in fit.results])),
            epochs_run=float(np.mean([r.epochs_run for r in fit.results])),
            val_mse=float(np.mean([r.best_val_loss for r in fit.results])),
            position_scale=scale,
            path=fit.path,
            seconds=round(time.perf_counter() - t_start, 2),
        )
        if checkpoint_dir is not None:
            ckpt = Path(checkpoint_dir) / f"ldtm_fold{split.fold:02d}.pt"
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "config": cfg.to_dict(),
                "symbols": [str(symbols[j]) for j in trained],
                "state_dicts": [m.state_dict() for m in fit.models],
                "feature_names": list(names),
                "data_sha256": data_sha256,
                "train_period": [info["train_start"], info["val_end"]],
                "torch_version": torch.__version__,
                "fold": split.fold,
                "seeds": seeds,
                "position_scale": scale,
                "train_config": asdict(train),
            }
            with atomic_path(ckpt) as tmp:
                torch.save(payload, tmp)
            info["checkpoint"] = str(ckpt)
        logs.append(info)
        hist = pd.DataFrame([{**h} for r in fit.results for h in r.history])
        if len(hist):
            for _, row in hist.groupby("epoch").mean(numeric_only=True).reset_index().iterrows():
                curves.append({"fold": split.fold, "model": "ldtm", "epoch": int(row["epoch"]), "train_loss": row["train_loss"], "val_loss": row["val_loss"]})
    positions = pd.concat(pos_blocks)
    config = {
        "model": "ldtm",
        "test_start": str(test_start),
        "test_end": str(test_end) if test_end is not None else None,
        "test_size": test_size,
        "val_fraction": val_fraction,
        "lookback": lookback,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "dropout": dropout,
        "horizons": list(horizons),
        "sample_stride": sample_stride,
        "min_train_samples": min_train_samples,
        "path": path,
        "train": asdict(train),
    }
    forecasts = {h: pd.concat(b) for h, b in fc_blocks.items()}
    return WalkForwardResult(positions, pd.DataFrame(logs), list(names), vol, config, pd.DataFrame(curves), None, X, forecasts)


_COMMON_WF_KEYS = ("test_start", "test_end", "test_size", "val_fraction", "train", "train_start", "checkpoint_dir", "data_sha256", "progress")


def walk_forward_model(frames: dict, model: str, *, ldtm: dict | None = None, **kwargs) -> WalkForwardResult:
    """Walk-forward training of any model of the kit by name, for notebooks.

    ``model="ldtm"`` runs :func:`walk_forward_ldtm` on ``frames`` with the keys of ``kwargs`` it
    shares with :func:`walk_forward` (test dates and size, validation fraction, ``train``,
    checkpoints, data sha256, progress) plus ``ldtm`` (its own settings, e.g. ``hidden_size``,
    ``lookback``, ``sample_stride``); every other name runs :func:`walk_forward` on
    ``frames["close"]`` with ``kwargs``.

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames by field (:func:`kit.data.wide_fields`); the
        position models need only ``close``.

    Raises
    ------
    ValueError
        Unknown model name, or a missing field.
    """
    if model == "ldtm":
        common = {k: v for k, v in kwargs.items() if k in _COMMON_WF_KEYS}
        return walk_forward_ldtm(frames, **common, **(ldtm or {}))
    if "close" not in frames:
        raise ValueError(f"frames needs a 'close' field for model {model!r}; got {sorted(frames)}")
    return walk_forward(frames["close"], model=model, **kwargs)


@torch.no_grad()
def explain_transformer(model: torch.nn.Module, features: np.ndarray, start: int, end: int, seq_len: int, feature_names, max_windows: int = 4096) -> dict:
    """Interpretation of a :class:`kit.models.MomentumTransformer` (or the first one inside a
    :class:`kit.models.PositionEnsemble`) on the windows ending at dates ``[start, end)``.

    Returns
    -------
    dict with ``variable_importance`` (Series over features: mean variable-selection weight),
    ``attention_by_lag`` (array ``(seq_len,)``: mean attention of the last step on each lag, lag 0 =
    the decision date), or ``None`` when the model holds no transformer.
    """
    from .models import MomentumTransformer, PositionEnsemble

    net = model
    if isinstance(model, PositionEnsemble):
        net = next((m for m in model.members if isinstance(m, MomentumTransformer)), None)
    if not isinstance(net, MomentumTransformer):
        return None
    net.eval()
    X, valid = rolling_windows(features, start, end, seq_len)
    keep = np.flatnonzero(valid.reshape(-1))
    if len(keep) > max_windows:
        keep = keep[np.linspace(0, len(keep) - 1, max_windows).astype(int)]
    dev = next(net.parameters()).device
    _, w = net(torch.as_tensor(X[keep]).to(dev), return_weights=True)
    vi = w["variable_weights"].mean(dim=(0, 1)).cpu().numpy()
    att = w["attention"][:, :, -1, :].mean(dim=(0, 1)).cpu().numpy()[::-1].copy()
    return {"variable_importance": pd.Series(vi, index=list(feature_names)), "attention_by_lag": att}
