"""Live (paper) trading: the broker interface (:mod:`.brokers`), the simulated broker (:mod:`.sim`)
and Alpaca's paper API (:mod:`.alpaca`), the feature state on disk (:mod:`.state`), the daily step
as named stages (:mod:`.daily`), replays over history (:mod:`.replay`), and the daily loop that
watches it (:mod:`.loop`, ``python -m kit daily``): the retraining policy and path (:mod:`.retrain`)
and the metrics for Prometheus and the webhook alert (:mod:`.monitoring`)."""

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
from .loop import DailyLockedError, DailyResult, MonitorConfig, replay_daily, run_daily
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
    "DailyLockedError",
    "DailyResult",
    "MonitorConfig",
    "replay_daily",
    "run_daily",
    "ReplayResult",
    "paper_history",
    "prepare_model",
    "replay",
    "SimBroker",
    "FeatureWindow",
]
