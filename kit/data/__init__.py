"""Data: the price schema (:mod:`.schema`), reading and adjusting prices (:mod:`.load`), validation
with severities (:mod:`.validate`), the cleaning policy (:mod:`.clean`), point-in-time index
membership (:mod:`.membership`), bar frequencies, calendars and resampling (:mod:`.bars`), universe
selection (:mod:`.universe`) and daily bar sources (:mod:`.sources`:
the Parquet store and Alpaca market data, whose HTTP plumbing is :mod:`.alpaca_http`)."""

from ..paths import default_store, sample_store
from .bars import BarFrequency, exchange_calendar, infer_frequency, period_labels, resample_bars, sessions
from .clean import ACTIONS, CleaningPolicy, CleaningReport, clean_prices
from .load import (
    adjust_prices,
    data_sha256,
    load_prices,
    read_prices,
    source_market_moves,
    to_wide,
    trading_calendar,
    wide_fields,
)
from .membership import (
    UNIVERSE_MODES,
    align_membership,
    load_membership,
    members_on,
    membership_file,
    membership_mask,
    survivorship_coverage,
)
from .schema import (
    OPTIONAL_COLUMNS,
    PRICE_FIELDS,
    REQUIRED_COLUMNS,
    SEVERITIES,
    DataFormatError,
    DataValidationError,
)
from .universe import UniverseData, load_universe, select_universe, store_coverage, universe_summary
from .validate import CHECKS, ValidationReport, market_moves, validate_prices

__all__ = [
    "DataFormatError",
    "DataValidationError",
    "ValidationReport",
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "PRICE_FIELDS",
    "default_store",
    "sample_store",
    "read_prices",
    "validate_prices",
    "adjust_prices",
    "load_prices",
    "to_wide",
    "wide_fields",
    "select_universe",
    "data_sha256",
    "trading_calendar",
    "load_universe",
    "universe_summary",
    "SEVERITIES",
    "CHECKS",
    "market_moves",
    "source_market_moves",
    "BarFrequency",
    "infer_frequency",
    "exchange_calendar",
    "sessions",
    "period_labels",
    "resample_bars",
    "ACTIONS",
    "CleaningPolicy",
    "CleaningReport",
    "clean_prices",
    "UNIVERSE_MODES",
    "load_membership",
    "members_on",
    "membership_file",
    "membership_mask",
    "align_membership",
    "survivorship_coverage",
    "UniverseData",
    "store_coverage",
]
