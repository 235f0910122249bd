"""Deep momentum research kit.

Packages, in the order data flows through them (each imports only from those before it; a test
checks this): ``paths``, ``conventions`` and ``base`` (repository paths, the field's constants,
shared mechanisms), ``data`` (load, validate, adjust prices; bar sources), ``features`` (numba
kernels, named feature sets, targets, windows, streaming state), ``models`` (DMN LSTM, Momentum
Transformer, per-ticker forecaster, baselines, ensembles; the catalogue, losses, checkpoints,
export), ``training`` (splits, Trainer, batched universe training, walk-forward experiments,
search), ``portfolio`` (sizing, benchmarks, vectorbt backtest and its reference, execution model,
limits, overlays, optimisation), ``analytics`` (Sharpe intervals, PSR/DSR, performance table,
VaR/CVaR, stress tests, model evaluation, drift statistics), ``store`` (database, registry, ledger,
monitoring records), ``live`` (brokers, the daily paper step, replay, the daily loop with drift
checks, retraining and metrics for Prometheus), ``reports`` (profiles, papermill runs, rendering, the site of runs)
and ``cli``.

Submodules are imported explicitly (``from kit import data``) so that ``import kit`` stays fast.
"""

__version__ = "0.1.0"
