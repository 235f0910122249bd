"""Features: numba kernels on ``(T, N)`` arrays (:mod:`.kernels`, arrays only), labelled indicators
(:mod:`.indicators`), the table of named feature sets (:mod:`.sets`), targets (:mod:`.targets`),
windows (:mod:`.windows`), the streaming state (:mod:`.streaming`), multi-timeframe features
(:mod:`.multi`) and cross-sectional signals (:mod:`.cross_section`: rebalance calendars, 12-1
momentum, quantile legs, learning-to-rank inputs). Changepoint features: the GP changepoint
severity and location of the Momentum Transformer paper (:mod:`.changepoint`, torch, batched),
Bayesian online changepoint detection (:mod:`.bocpd`, numba, also the ``bocpd`` feature set), their
on-disk cache (:mod:`.cache`) and the feature specifications a profile gives a model (:mod:`.spec`:
``features: dmn+cpd21+bocpd``). :mod:`.changepoint` and :mod:`.cache` are imported on first use
(torch, pyarrow), not by this package.

Frames are wide ``(T, N)`` (index = dates, columns = symbols). Every feature at date t uses prices up
to and including t only; every target at date t uses prices after t only.
"""

from . import kernels
from .cross_section import (
    REBALANCE_FREQUENCIES,
    ltr_features,
    momentum_12_1,
    month_end_dates,
    quantile_buckets,
    quantile_legs,
    rebalance_dates,
    rebalance_positions,
)
from .indicators import (
    baz_response,
    daily_returns,
    ex_ante_vol,
    macd_composite,
    macd_signal,
    normalised_returns,
    symbol_indicators,
)
from .multi import TIMEFRAMES, multi_timeframe_features
from .sets import (
    FEATURE_SETS,
    TREE_LDTM_FEATURES,
    FeatureArray,
    FeatureSetSpec,
    dmn_features,
    feature_set,
    stack_features,
    tree_features,
)
from .spec import DEFAULT_FEATURES, feature_array, feature_spec_names, parse_feature_spec
from .streaming import StreamingFeatures, StreamingStateError
from .targets import forward_returns, horizon_target, next_day_target, period_returns
from .windows import (
    complete_windows,
    make_samples,
    make_sequences,
    padded_windows,
    rolling_windows,
    sliding_windows,
)

__all__ = [
    "kernels",
    "daily_returns",
    "ex_ante_vol",
    "symbol_indicators",
    "macd_signal",
    "baz_response",
    "macd_composite",
    "normalised_returns",
    "FEATURE_SETS",
    "FeatureArray",
    "FeatureSetSpec",
    "dmn_features",
    "feature_set",
    "stack_features",
    "TREE_LDTM_FEATURES",
    "tree_features",
    "DEFAULT_FEATURES",
    "feature_array",
    "feature_spec_names",
    "parse_feature_spec",
    "StreamingFeatures",
    "StreamingStateError",
    "forward_returns",
    "horizon_target",
    "next_day_target",
    "period_returns",
    "REBALANCE_FREQUENCIES",
    "rebalance_dates",
    "month_end_dates",
    "rebalance_positions",
    "momentum_12_1",
    "quantile_buckets",
    "quantile_legs",
    "ltr_features",
    "complete_windows",
    "make_samples",
    "make_sequences",
    "padded_windows",
    "rolling_windows",
    "sliding_windows",
    "multi_timeframe_features",
    "TIMEFRAMES",
]
