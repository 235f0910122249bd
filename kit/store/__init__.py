"""Storage: engines and serialised transactions (:mod:`.engine`), the whole schema and its
migrations (:mod:`.schema`), the model registry with its promotion gate (:mod:`.registry`), the
prediction audit ledger (:mod:`.ledger`) and the daily loop's records (:mod:`.monitoring`: drift
checks, the loop's runs). SQLAlchemy Core; SQLite by default, any SQLAlchemy URL
(PostgreSQL) through ``KIT_DB_URL``."""

from . import ledger, monitoring, registry
from .engine import (
    SchemaVersionError,
    default_url,
    dispose_engines,
    ensure_schema,
    get_engine,
    read_tx,
    schema_version,
    utc_now,
    write_tx,
)
from .schema import LATEST_VERSION, MIGRATIONS, TABLES, metadata

__all__ = [
    "ledger",
    "monitoring",
    "registry",
    "SchemaVersionError",
    "default_url",
    "dispose_engines",
    "ensure_schema",
    "get_engine",
    "read_tx",
    "schema_version",
    "utc_now",
    "write_tx",
    "LATEST_VERSION",
    "MIGRATIONS",
    "TABLES",
    "metadata",
]
