"""Mechanisms every layer may use: atomic writes, file locks, strict settings, JSON conversion and
fault injection for the crash tests. Nothing here knows about prices, models or portfolios."""

from .atomic import atomic_path, atomic_write_text
from .config import ConfigError, nearest, strict_dataclass, unknown_keys_message
from .faults import fault_point, set_hook
from .jsonable import jsonable
from .locks import LockHeldError, file_lock, lock_is_held

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "ConfigError",
    "nearest",
    "strict_dataclass",
    "unknown_keys_message",
    "fault_point",
    "set_hook",
    "jsonable",
    "LockHeldError",
    "file_lock",
    "lock_is_held",
]
