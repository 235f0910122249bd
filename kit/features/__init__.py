"""Features: numba kernels on ``(T, N)`` arrays (:mod:`.kernels`, arrays only), labelled indicators
(:mod:`.indicators`), the table of named feature sets (:mod:`.sets`), targets (:mod:`.targets`),
windows (:mod:`.windows`) and the streaming state (:mod:`.streaming`).

Frames are wide ``(T, N)`` (index = dates, columns = symbols). Every feature at date t uses prices up
to and including t only; every target at date t uses prices after t only.
"""

from . import kernels
from .indicators import daily_returns, ex_ante_vol, macd_signal, normalised_returns, symbol_indicators
from .sets import FEATURE_SETS, FeatureArray, FeatureSetSpec, dmn_features, feature_set, stack_features
from .streaming import StreamingFeatures, StreamingStateError
from .targets import forward_returns, next_day_target
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
    "normalised_returns",
    "FEATURE_SETS",
    "FeatureArray",
    "FeatureSetSpec",
    "dmn_features",
    "feature_set",
    "stack_features",
    "StreamingFeatures",
    "StreamingStateError",
    "forward_returns",
    "next_day_target",
    "complete_windows",
    "make_samples",
    "make_sequences",
    "padded_windows",
    "rolling_windows",
    "sliding_windows",
]
