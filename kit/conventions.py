"""The field's constants, defined once: trading days per year, the Deep Momentum Network settings,
forecast horizons and the default cost sweep.

Returns are simple decimal fractions unless named ``log_``; volatilities called ``ex_ante_vol`` and
``target_vol`` are annualised with ``sqrt(TRADING_DAYS)``; costs are ``cost_bps``, basis points of
traded notional. A position decided at the close of day t earns the return from t to t + 1.
"""

from __future__ import annotations

__all__ = [
    "TRADING_DAYS",
    "DMN_RETURN_HORIZONS",
    "DMN_MACD_PAIRS",
    "VOL_SPAN",
    "VOL_MIN_PERIODS",
    "TARGET_VOL",
    "FORECAST_HORIZONS",
    "FORECAST_QUANTILES",
    "COST_SWEEP_BPS",
    "CPD_LOOKBACKS",
    "DEFAULT_CPD_LOOKBACKS",
]

TRADING_DAYS = 252
"""Bars per year of US daily data; annualisation factor ``sqrt(252)`` for volatilities and Sharpe
ratios. Functions that annualise take ``bars_per_year`` (default this constant) so that other bar
frequencies use their own: :func:`kit.data.infer_frequency` reads it from the data (52 for weekly,
12 for monthly, 252 times the bars per session for intraday bars)."""

DMN_RETURN_HORIZONS = (1, 21, 63, 126, 252)
"""Return horizons of the DMN inputs (Lim, Zohren & Roberts, 2019, section 4.1), trading days."""

DMN_MACD_PAIRS = ((8, 24), (16, 48), (32, 96))
"""(short, long) time scales of the MACD indicators (Baz et al., 2015)."""

VOL_SPAN = 60
"""EWM span of the ex-ante daily volatility, trading days (Lim et al., 2019)."""

VOL_MIN_PERIODS = 20
"""Returns needed before the ex-ante volatility is defined."""

TARGET_VOL = 0.15
"""Annualised volatility target per asset (Lim et al., 2019)."""

FORECAST_HORIZONS = (1, 5, 21)
"""Horizons of the per-ticker forecasters and the ledger (seed 003), trading days."""

FORECAST_QUANTILES = (0.1, 0.5, 0.9)
"""Quantile levels of the quantile forecasters (foundation models) and of the ledger's
``forecast_q10``/``forecast``/``forecast_q90`` columns."""

COST_SWEEP_BPS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)
"""Costs of the reports' cost sweep, basis points of traded notional."""

CPD_LOOKBACKS = (10, 21, 63, 126, 252)
"""Lookback windows of the GP changepoint features, trading days (Wood, Roberts & Zohren, 2022)."""

DEFAULT_CPD_LOOKBACKS = (21, 126)
"""The papers' choices of changepoint lookback (one month, six months)."""
