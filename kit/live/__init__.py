"""Live (paper) trading: the broker interface (:mod:`.brokers`), the simulated broker (:mod:`.sim`)
and Alpaca's paper API (:mod:`.alpaca`), the feature state on disk (:mod:`.state`), the daily step
as named stages (:mod:`.daily`) and replays over history (:mod:`.replay`)."""

from .brokers import (
    FINAL_ORDER_STATUSES,
    OPEN_ORDER_STATUSES,
    ORDER_STATUSES,
    Account,
    Broker,
    BrokerConfigError,
    BrokerError,
    BrokerUnavailableError,
    DataSourceUnavailableError,
    Order,
    OrderNotFoundError,
    OrderRequest,
    Position,
    client_order_id,
)
from .daily import DayResult, PaperConfig, PaperError, PaperLockedError, load_history, run_day
from .replay import ReplayResult, paper_history, prepare_model, replay
from .sim import SimBroker
from .state import FeatureWindow

__all__ = [
    "FINAL_ORDER_STATUSES",
    "OPEN_ORDER_STATUSES",
    "ORDER_STATUSES",
    "Account",
    "Broker",
    "BrokerConfigError",
    "BrokerError",
    "BrokerUnavailableError",
    "DataSourceUnavailableError",
    "Order",
    "OrderNotFoundError",
    "OrderRequest",
    "Position",
    "client_order_id",
    "DayResult",
    "PaperConfig",
    "PaperError",
    "PaperLockedError",
    "load_history",
    "run_day",
    "ReplayResult",
    "paper_history",
    "prepare_model",
    "replay",
    "SimBroker",
    "FeatureWindow",
]
