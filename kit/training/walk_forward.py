"""Walk-forward experiments: every position model of the catalogue, ensembles, and the per-ticker
forecasters (LDTM), trained fold by fold on expanding windows; only the stitched test blocks are
returned."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..conventions import FORECAST_HORIZONS, TARGET_VOL, TRADING_DAYS
from ..features import (
    daily_returns,
    ex_ante_vol,
    feature_set,
    forward_returns,
    make_samples,
    make_sequences,
    next_day_target,
    padded_windows,
    rolling_windows,
)
from ..models import (
    POSITION_MODELS,
    PositionEnsemble,
    ensemble_weights,
    make_model,
    save_bundle,
    save_checkpoint,
)
from .splits import LeakageError, count_leakage, walk_forward_splits
from .trainer import TrainConfig, Trainer, set_seed

__all__ = [
    "WalkForwardResult",
    "WalkForwardSettings",
    "predict_positions",
    "predict_forecasts",
    "ldtm_positions",
    "position_scale",
    "walk_forward",
    "walk_forward_dmn",
    "walk_forward_ldtm",
    "walk_forward_model",
]



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



@torch.no_grad()
def predict_positions(model: torch.nn.Module, features: np.ndarray, start: int, end: int, lookback: int, batch: int = 4096) -> np.ndarray:
    """Positions for decision dates ``[start, end)``: the model's last-step output on the window of
    ``lookback`` dates ending at each date. Returns ``(end - start, N)`` float64, NaN where the
    features at the decision date are not all finite."""
    model.eval()
    dev = next(model.parameters()).device
    X, valid = rolling_windows(features, start, end, lookback)
    out = []
    for i in range(0, len(X), batch):
        out.append(model(torch.as_tensor(X[i : i + batch]).to(dev))[:, -1].float().cpu().numpy())
    pos = np.concatenate(out).astype(np.float64).reshape(end - start, features.shape[1]) if out else np.zeros((0, features.shape[1]))
    pos[~valid] = np.nan
    return pos



def walk_forward(
    close: pd.DataFrame,
    *,
    model: str = "dmn_lstm",
    test_start,
    test_end=None,
    test_size: int = 252,
    val_fraction: float = 0.1,
    lookback: int = 63,
    target_vol: float = TARGET_VOL,
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
        tr = make_sequences(X, y, *split.train, lookback)
        va = make_sequences(X, y, *split.val, min(lookback, split.val[1] - split.val[0]))
        fitted, val_losses, val_pos = [], [], []
        for k, name in enumerate(names_to_train):
            t_start = time.perf_counter()
            seed = train.seed + split.fold + 1000 * k
            set_seed(seed)
            net = make_model(name, len(names), hidden_size, dropout, num_layers, n_heads, kind="position")
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
                val_pos.append(predict_positions(net, X, *split.val, lookback))
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
        pos = predict_positions(net, X, *split.test, lookback)
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
        "lookback": lookback,
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
    model : a forecaster ``(B, L, F) -> (B, H)`` (e.g. :class:`kit.models.ldtm.LDTMForecaster`).
    features : ``(T, F)`` float array of that symbol's features (NaN where unknown).
    start, end : positions on the date axis; lookback : window length L.

    Returns
    -------
    ``(end - start, H)`` float64; NaN where the window is incomplete or holds a non-finite value
    (never a forecast from zero-filled inputs).
    """
    win = padded_windows(features[:, None, :], start, end, lookback, dtype=np.float32)[:, 0]  # (D, L, F)
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
    and :func:`kit.training.foundation.walk_forward_foundation` set it with :func:`position_scale`
    on the fold's validation forecasts, so nothing from the test block enters. NaN where the forecast or volatility is unknown or the
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



def position_scale(forecast_1d, daily_vol) -> float:
    """The scale ``s`` of :func:`ldtm_positions`, fitted on validation forecasts:
    ``s = 1 / std(z)`` with ``z = forecast_1d / daily_vol`` pooled over every (date, symbol) pair
    where z is finite (population standard deviation), so that a one-standard-deviation forecast
    maps to ``tanh(1) = 0.76``.

    Parameters
    ----------
    forecast_1d : array of one-day return forecasts on the validation dates, any shape (e.g.
        ``(T_val, N)``; NaN where there is none).
    daily_vol : ex-ante daily volatility, same shape (annualised vol / sqrt(252)).

    Returns
    -------
    float > 0; 1.0 when fewer than 2 finite z or when they do not vary.

    Raises
    ------
    ValueError
        Shapes that differ.
    """
    f = np.asarray(forecast_1d, dtype="float64")
    v = np.asarray(daily_vol, dtype="float64")
    if f.shape != v.shape:
        raise ValueError(f"forecast_1d {f.shape} and daily_vol {v.shape} must have the same shape")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = f / v
    z = z[np.isfinite(z)]
    sd = float(np.std(z)) if len(z) > 1 else 0.0
    return 1.0 / sd if sd > 0 else 1.0



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
    horizons=FORECAST_HORIZONS,
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
    and fold, all K symbols of a fold from one :func:`kit.training.batched.train_universe` call.

    Inputs are the 11 ``ldtm`` features (:func:`kit.features.feature_set`), windows of ``lookback``
    days min-max scaled per window inside the model; targets are forward simple returns over
    ``horizons`` (:func:`kit.features.forward_returns`), trained with the multi-horizon MSE. Splits
    come from :func:`walk_forward_splits` with ``horizon = max(horizons)`` (a 21-day embargo before
    validation and test blocks); each fold's leakage count must be 0. A symbol is trained in a fold
    when it has at least ``min_train_samples`` complete training windows and 2 validation windows;
    otherwise it has no position in that fold's test block (NaN = not live).

    Positions for the backtest: :func:`ldtm_positions` on the one-day forecast, scaled by the
    ex-ante daily volatility, with its scale fitted on the fold's validation forecasts only
    (:func:`position_scale`).

    Parameters
    ----------
    frames : dict of aligned ``(T, N)`` DataFrames ``open, high, low, close, volume``
        (:func:`kit.data.wide_fields`), adjusted prices.
    sample_stride : keep every k-th training window (most recent first); consecutive windows
        overlap by ``lookback - 1`` days, so a stride > 1 trades little information for speed.
    path : :func:`kit.training.batched.train_universe` path (``auto``, ``batched`` or ``loop``).
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
    from ..models import LDTMConfig
    from .batched import train_universe

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
    daily_vol = vol.to_numpy(dtype="float64") / np.sqrt(float(TRADING_DAYS))
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
        val_fc = np.full((v1 - v0, len(symbols)), np.nan)
        for model, j in zip(fit.models, trained, strict=True):
            test_fc[:, j] = predict_forecasts(model, X[:, j], t0, t1, lookback)
            val_fc[:, j] = predict_forecasts(model, X[:, j], v0, v1, lookback)[:, 0]
        scale = position_scale(val_fc.T, daily_vol[v0:v1].T)  # symbol-major, as the per-symbol loop pooled them
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
            save_bundle(
                ckpt, [str(symbols[j]) for j in trained], fit.models, feature_names=names, data_sha256=data_sha256,
                train_period=(info["train_start"], info["val_end"]),
                extra={"fold": split.fold, "seeds": seeds, "position_scale": scale, "train_config": asdict(train)},
            )
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



@dataclass
class WalkForwardSettings:
    """The walk-forward settings a profile gives the training and backtest notebooks, in one object:
    built from the notebook's parameters with :meth:`from_params` (type- and range-checked), run for
    any model of the catalogue with :meth:`run`.

    Attributes (profile keys; units)
    --------------------------------
    test_start : first out-of-sample date (ISO string). test_size : trading days per test block (the
    model is retrained before each). val_fraction : share of each training window used for
    validation and early stopping. lookback : window of the position models, trading days.
    target_vol : annualised volatility target of the training target. hidden_size, num_layers,
    dropout, n_heads : architecture (``d_model = hidden_size`` for the Transformer). members,
    ensemble_method : the ensemble's members and weighting. epochs (maximum), patience, batch_size,
    lr, max_grad_norm, seed : optimisation. ldtm_hidden_size, ldtm_lookback, ldtm_sample_stride : the
    per-ticker forecasters.
    """

    test_start: str = "2016-01-01"
    test_size: int = 252
    val_fraction: float = 0.1
    lookback: int = 63
    target_vol: float = TARGET_VOL
    hidden_size: int = 20
    num_layers: int = 1
    dropout: float = 0.1
    n_heads: int = 4
    members: tuple = ("dmn_lstm", "linear", "mlp")
    ensemble_method: str = "stacked"
    epochs: int = 100
    patience: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    max_grad_norm: float = 1.0
    seed: int = 0
    ldtm_hidden_size: int = 128
    ldtm_lookback: int = 30
    ldtm_sample_stride: int = 5

    _RULES = {
        "test_size": (int, 1, None), "val_fraction": (float, 1e-9, 0.5), "lookback": (int, 1, None), "target_vol": (float, 1e-9, None),
        "hidden_size": (int, 1, None), "num_layers": (int, 1, None), "dropout": (float, 0.0, 0.999999), "n_heads": (int, 1, None),
        "epochs": (int, 1, None), "patience": (int, 1, None), "batch_size": (int, 1, None), "lr": (float, 1e-12, None),
        "max_grad_norm": (float, 1e-12, None), "seed": (int, 0, None), "ldtm_hidden_size": (int, 1, None), "ldtm_lookback": (int, 1, None),
        "ldtm_sample_stride": (int, 1, None),
    }

    @classmethod
    def from_params(cls, params, where: str = "walk-forward settings") -> WalkForwardSettings:
        """Pick this class's fields from ``params`` (e.g. a notebook's ``globals()``; other keys are
        ignored) and check each value's type and range.

        Raises
        ------
        ValueError
            A value of the wrong type or out of range (names the key, the value and the rule), an
            unparseable ``test_start``, an unknown member or ensemble method.
        """
        import dataclasses

        kw = {f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params}
        for key, (typ, lo, hi) in cls._RULES.items():
            if key not in kw:
                continue
            v = kw[key]
            ok_type = isinstance(v, int) and not isinstance(v, bool) if typ is int else isinstance(v, int | float) and not isinstance(v, bool)
            if not ok_type:
                raise ValueError(f"{where}: {key} must be {'an integer' if typ is int else 'a number'}, got {v!r}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{where}: {key} must be {rng}, got {v!r}")
            kw[key] = typ(v)
        if "test_start" in kw:
            try:
                pd.Timestamp(kw["test_start"])
            except (ValueError, TypeError):
                raise ValueError(f"{where}: test_start must be a date (YYYY-MM-DD), got {kw['test_start']!r}") from None
            kw["test_start"] = str(kw["test_start"])
        if "members" in kw:
            m = kw["members"]
            if isinstance(m, str) or not all(x in POSITION_MODELS for x in m):
                raise ValueError(f"{where}: members must be a list of position models {list(POSITION_MODELS)}, got {m!r}")
            kw["members"] = tuple(m)
        if kw.get("ensemble_method", "stacked") not in ("equal", "inverse_loss", "stacked"):
            raise ValueError(f"{where}: ensemble_method must be 'equal', 'inverse_loss' or 'stacked', got {kw['ensemble_method']!r}")
        return cls(**kw)

    def train_config(self, **overrides) -> TrainConfig:
        """The :class:`TrainConfig` of these settings, with ``overrides`` (e.g. searched values)."""
        base = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "max_grad_norm": self.max_grad_norm,
                "patience": self.patience, "seed": self.seed}
        base.update({k: v for k, v in overrides.items() if k in base})
        return TrainConfig(**base)

    def run(self, frames: dict, name: str, *, hyper: dict | None = None, checkpoint_dir=None, data_sha256: str = "",
            progress: bool = True) -> WalkForwardResult:
        """Train model ``name`` walk-forward on ``frames`` (:func:`walk_forward_model`) with these
        settings; ``hyper`` overrides ``hidden_size``, ``dropout``, ``batch_size``, ``lr`` and
        ``max_grad_norm`` (e.g. a search's best parameters)."""
        h = {"hidden_size": self.hidden_size, "dropout": self.dropout, **(hyper or {})}
        return walk_forward_model(
            frames, name,
            ldtm={"hidden_size": self.ldtm_hidden_size, "lookback": self.ldtm_lookback, "sample_stride": self.ldtm_sample_stride},
            members=self.members, ensemble_method=self.ensemble_method, n_heads=self.n_heads, test_start=self.test_start,
            test_size=self.test_size, val_fraction=self.val_fraction, lookback=self.lookback, target_vol=self.target_vol,
            hidden_size=h["hidden_size"], num_layers=self.num_layers, dropout=h["dropout"], train=self.train_config(**(hyper or {})),
            checkpoint_dir=checkpoint_dir, data_sha256=data_sha256, progress=progress,
        )
