"""Analytics: the Sharpe ratio with its intervals and the PSR/DSR family (:mod:`.sharpe`), the
performance table and return statistics (:mod:`.performance`), one VaR/CVaR (:mod:`.risk`), stress
tests and correlation (:mod:`.stress`), model evaluation for the registry's gate
(:mod:`.evaluation`), factor analysis of cross-sectional scores (:mod:`.factors`: information
coefficients, quantile returns, turnover, IC decay) and drift statistics for the daily loop
(:mod:`.drift`: PSI, KS with Holm's adjustment, feature and performance drift). Returns are daily
simple returns; statistics are annualised with 252 days."""

from . import factors
from .evaluation import fold_metrics, oos_metrics, quantile_metrics
from .factors import factor_data, factor_report, newey_west_tstat
from .performance import (
    avg_profit_over_avg_loss,
    benchmark_comparison,
    downside_deviation,
    drawdown,
    hit_rate,
    information_ratio,
    performance_table,
)
from .risk import (
    VAR_METHODS,
    conditional_value_at_risk,
    cornish_fisher_z,
    expected_shortfall,
    portfolio_conditional_value_at_risk,
    portfolio_returns,
    portfolio_value_at_risk,
    value_at_risk,
    var_table,
)
from .sharpe import (
    EULER_MASCHERONI,
    Moments,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    minimum_track_record_length,
    probabilistic_sharpe_ratio,
    sample_moments,
    sharpe_difference_bootstrap_ci,
    sharpe_ratio,
    sharpe_ratio_bootstrap_ci,
    sharpe_ratio_ci,
)
from .stress import rolling_average_correlation, stress_test

__all__ = [
    "factors",
    "factor_data",
    "factor_report",
    "newey_west_tstat",
    "fold_metrics",
    "oos_metrics",
    "quantile_metrics",
    "avg_profit_over_avg_loss",
    "benchmark_comparison",
    "downside_deviation",
    "drawdown",
    "hit_rate",
    "information_ratio",
    "performance_table",
    "VAR_METHODS",
    "conditional_value_at_risk",
    "cornish_fisher_z",
    "expected_shortfall",
    "portfolio_conditional_value_at_risk",
    "portfolio_returns",
    "portfolio_value_at_risk",
    "value_at_risk",
    "var_table",
    "EULER_MASCHERONI",
    "Moments",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "minimum_track_record_length",
    "probabilistic_sharpe_ratio",
    "sample_moments",
    "sharpe_ratio",
    "sharpe_difference_bootstrap_ci",
    "sharpe_ratio_bootstrap_ci",
    "sharpe_ratio_ci",
    "rolling_average_correlation",
    "stress_test",
]
