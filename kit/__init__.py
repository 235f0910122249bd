"""Deep momentum research kit.

Modules: ``data`` (load, validate, adjust prices), ``kernels`` (numba feature kernels),
``features`` (named feature sets, targets, windows), ``streaming`` (per-bar feature state),
``models`` (DMN LSTM, Momentum Transformer, LDTM, baselines, ensembles), ``losses`` (Sharpe,
combined, multi-horizon MSE), ``training`` (walk-forward, Trainer), ``batched`` (K per-ticker
models in one computation), ``search`` (optuna), ``export`` (TorchScript, ONNX), ``backtest``
(vectorbt portfolios, benchmarks), ``metrics`` (statistics via empyrical), ``reports`` (papermill
runs, HTML rendering, run index), ``cli``.

Submodules are imported explicitly (``from kit import data``) so that ``import kit`` stays fast.
"""

__version__ = "0.1.0"
