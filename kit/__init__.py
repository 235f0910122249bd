"""Deep momentum research kit.

Modules (see ../DESIGN in the README): ``data`` (load, validate, adjust prices), ``features``
(DMN inputs and targets), ``models`` (Deep Momentum LSTM), ``losses`` (Sharpe loss), ``training``
(walk-forward, Trainer), ``backtest`` (vectorbt portfolios, benchmarks), ``metrics`` (statistics via
empyrical), ``reports`` (papermill runs, HTML rendering, run index), ``cli``.

Submodules are imported lazily (``import kit.data``) so that ``import kit`` stays fast.
"""

__version__ = "0.1.0"
