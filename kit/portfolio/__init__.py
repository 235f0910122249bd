"""Portfolio: sizing and volatility targeting (:mod:`.sizing`), benchmarks (:mod:`.benchmarks`),
cross-sectional long-short books and their benchmarks (:mod:`.cross_sectional`), the vectorbt
backtest and its numpy reference with borrow fees and market impact (:mod:`.backtest`), the next-open execution model of paper
trading (:mod:`.execution`), limits and the pre-trade check (:mod:`.limits`), risk overlays
(:mod:`.overlays`) and optimisation (:mod:`.optimise`).

Timing: a position decided at the close of day t (from data up to t) is held from the close of t to
the close of t + 1 and earns ``r_{t+1}``.
"""

from .backtest import (
    ENGINES,
    INIT_CASH,
    BacktestResult,
    MarketImpact,
    compare_strategies,
    cost_sweep,
    market_impact,
    reference_returns,
    simulate,
)
from .benchmarks import benchmark_positions, long_only_positions, macd_positions, tsmom_positions
from .cross_sectional import (
    CS_BENCHMARK_NAMES,
    cross_sectional_benchmarks,
    cs_macd_weights,
    cs_momentum_weights,
    decile_long_short_weights,
    leg_weights,
)
from .execution import NextOpenResult, next_open_reference, next_open_vectorbt, order_quantities
from .limits import PORTFOLIO, Limits, PreTradeResult, apply_limits, pre_trade_check
from .optimise import OPTIMISATION_METHODS, OptimisationError, optimise_weights
from .overlays import atr_stop_overlay, drawdown_control, overlay_strategies
from .sizing import portfolio_vol_scaled_weights, turnover, vol_scaled_weights

__all__ = [
    "ENGINES",
    "INIT_CASH",
    "BacktestResult",
    "MarketImpact",
    "market_impact",
    "CS_BENCHMARK_NAMES",
    "cross_sectional_benchmarks",
    "cs_macd_weights",
    "cs_momentum_weights",
    "decile_long_short_weights",
    "leg_weights",
    "compare_strategies",
    "cost_sweep",
    "reference_returns",
    "simulate",
    "benchmark_positions",
    "long_only_positions",
    "macd_positions",
    "tsmom_positions",
    "NextOpenResult",
    "next_open_reference",
    "next_open_vectorbt",
    "order_quantities",
    "PORTFOLIO",
    "Limits",
    "PreTradeResult",
    "apply_limits",
    "pre_trade_check",
    "OPTIMISATION_METHODS",
    "OptimisationError",
    "optimise_weights",
    "atr_stop_overlay",
    "drawdown_control",
    "overlay_strategies",
    "portfolio_vol_scaled_weights",
    "turnover",
    "vol_scaled_weights",
]
