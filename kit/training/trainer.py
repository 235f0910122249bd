"""The Trainer: minibatch training with AdamW, cosine annealing, gradient clipping and early stopping,
on the CPU and CUDA through one code path (mixed precision on CUDA, plain fp32 on the CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.losses import sharpe_loss

__all__ = ["set_seed", "TrainConfig", "TrainResult", "EarlyStopping", "resolve_device", "amp_settings", "Trainer"]



def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)



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
    """Outcome of a fit: the best validation loss and its epoch, the epochs run, and the history
    (one ``{"epoch", "train_loss", "val_loss"}`` dict per epoch)."""

    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list = field(default_factory=list)



class EarlyStopping:
    """Early stopping on a validation loss (lower is better), for one model.

    An epoch improves when its loss is below the best so far by more than ``min_delta``; training
    stops after ``patience`` epochs in a row without improvement. The Trainer keeps one instance, the
    batched universe trainer one per model.

    Attributes
    ----------
    best : best validation loss so far (``inf`` before the first epoch).
    best_epoch : its epoch (``-1`` before the first).
    since : epochs since the last improvement.
    """

    def __init__(self, patience: int, min_delta: float = 1e-6):
        if int(patience) != patience or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best, self.best_epoch, self.since = float("inf"), -1, 0

    def update(self, epoch: int, val_loss: float) -> tuple[bool, bool]:
        """Record one epoch's validation loss; returns ``(improved, stop)``."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.since = val_loss, epoch, 0
            return True, False
        self.since += 1
        return False, self.since >= self.patience


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
    loss_fn : ``loss_fn(output, y, mask) -> scalar``; default :func:`kit.models.losses.sharpe_loss`
        (position models). For forecasters use e.g. :func:`kit.models.losses.multi_horizon_mse`.
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
        stopper = EarlyStopping(cfg.patience)
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history = []
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
            improved, stop = stopper.update(epoch, val_loss)
            if improved:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif stop:
                break
        model.load_state_dict(best_state)
        model.eval()
        return TrainResult(stopper.best, stopper.best_epoch, epoch + 1, history)

    @torch.no_grad()
    def evaluate(self, model, X, y, mask, batch: int = 8192) -> float:
        """Loss of ``model`` on a whole set in eval mode (no dropout), in float32."""
        model.eval()
        outs = [model(X[i : i + batch]).float() for i in range(0, len(X), batch)]
        return float(self.loss_fn(torch.cat(outs), y, mask))

