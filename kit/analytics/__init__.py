"""Analytics: the Sharpe ratio with its intervals and the PSR/DSR family (:mod:`.sharpe`), the
performance table and return statistics (:mod:`.performance`), one VaR/CVaR (:mod:`.risk`), stress
tests and correlation (:mod:`.stress`), and model evaluation for the registry's gate
(:mod:`.evaluation`). Returns are daily simple returns; statistics are annualised with 252 days."""

from .evaluation import fold_metrics, oos_metrics, quantile_metrics
from .performance import (
    avg_profit_over_avg_loss,
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
    sharpe_ratio,
    sharpe_ratio_bootstrap_ci,
    sharpe_ratio_ci,
)
from .stress import rolling_average_correlation, stress_test

__all__ = [
    "fold_metrics",
    "oos_metrics",
    "quantile_metrics",
    "avg_profit_over_avg_loss",
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
    "sharpe_ratio_bootstrap_ci",
    "sharpe_ratio_ci",
    "rolling_average_correlation",
    "stress_test",
]
