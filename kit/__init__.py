"""Deep momentum research kit.

Modules: ``data`` (load, validate, adjust prices), ``kernels`` (numba feature kernels),
``features`` (named feature sets, targets, windows), ``streaming`` (per-bar feature state),
``models`` (DMN LSTM, Momentum Transformer, LDTM, baselines, ensembles), ``losses`` (Sharpe,
combined, multi-horizon MSE), ``training`` (walk-forward, Trainer), ``batched`` (K per-ticker
models in one computation), ``search`` (optuna), ``export`` (TorchScript, ONNX), ``backtest``
(vectorbt portfolios, benchmarks), ``metrics`` (statistics via empyrical, bootstrap, deflated
Sharpe), ``risk`` (VaR/CVaR, limits, drawdown control, stops, stress tests, optimisation, pre-trade
check), ``db`` (SQLAlchemy storage, schema versions), ``registry`` (model versions, promotion
gate), ``ledger`` (prediction snapshots, fillback, leaderboard, hash chain), ``brokers`` (broker
interface, Alpaca paper adapter, bar sources), ``paper`` (simulated broker, the daily paper step,
replay), ``reports`` (papermill runs, HTML rendering, run index), ``cli``.

Submodules are imported explicitly (``from kit import data``) so that ``import kit`` stays fast.
"""

__version__ = "0.1.0"
