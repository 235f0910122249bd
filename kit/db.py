"""Storage for the registry and the ledger: engines, the schema and its migrations, write transactions.

SQLAlchemy Core. The database is given by a SQLAlchemy URL: the default is a SQLite file
``data/state/kit.db`` in the repository (``data/state/`` is ignored by git, and so are SQLite's
``-wal``/``-shm`` side files there), overridden by the ``KIT_DB_URL`` environment variable, e.g.
``postgresql+psycopg://user@host/dbname``. The same code runs on SQLite and PostgreSQL.

Transactions
------------
Every change of more than one row is one transaction, opened by :func:`write_tx`, which also
serialises writers so that a read-check-write sequence (assign the next ledger sequence number,
refuse a duplicate, promote a model and retire the previous one) cannot interleave with another
process doing the same:

* SQLite: the driver's own transaction handling is switched off and the kit emits ``BEGIN
  IMMEDIATE`` for writers (the recipe of SQLAlchemy's SQLite dialect documentation, "Enabling
  Non-Legacy SQLite Transactional Modes"): a second writer waits for the first (busy timeout 60 s)
  instead of failing half-way. Connections use WAL journaling (readers do not block the writer),
  ``synchronous=FULL`` and foreign keys.
* PostgreSQL: ``BEGIN`` then ``pg_advisory_xact_lock(key)`` with one key per purpose (schema,
  registry, ledger); the lock is released at commit or rollback, including when the client process
  dies and the server aborts its transaction.
* Other dialects: a plain transaction; unique constraints still refuse duplicates.

Schema versions
---------------
A ``schema_version`` table records each applied migration (version, description, time).
:func:`ensure_schema` (called by :func:`get_engine`) applies the missing ones, in order, in one
serialised transaction (SQLite and PostgreSQL both have transactional DDL, so a failed upgrade leaves
the previous version intact). A database written by a newer kit raises :class:`SchemaVersionError`.
Alembic (installed with optuna) was not used: it needs a migration environment shipped as package
data and gives no protection against two processes upgrading at once, while this schema is a few
tables whose migrations fit in functions here and must run inside the same serialised transaction as
the kit's other writers. Rule for a future migration: append ``(version, description, function)`` to
:data:`MIGRATIONS`; the function receives the open connection and must bring a database of the
previous version to the new one (for example ``ALTER TABLE ... ADD COLUMN``), and the table
definitions below are then updated to the new version. Version 1's function builds the version 1
tables from their own frozen definitions (:func:`_define_v1`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "SchemaVersionError",
    "DEFAULT_DB_PATH",
    "default_url",
    "get_engine",
    "dispose_engines",
    "write_tx",
    "read_tx",
    "ensure_schema",
    "schema_version",
    "MIGRATIONS",
    "LATEST_VERSION",
    "metadata",
    "utc_now",
    "jsonable",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_PATH = REPO_ROOT / "data" / "state" / "kit.db"
SQLITE_BUSY_TIMEOUT_S = 60.0
_LOCK_KEYS = {"schema": 731_001, "registry": 731_002, "ledger": 731_003, "paper": 731_004}


class SchemaVersionError(RuntimeError):
    """The database's schema version is newer than this kit knows, or a migration is missing."""


def default_url() -> str:
    """``$KIT_DB_URL`` when set (and not empty), else ``sqlite:///<repo>/data/state/kit.db``."""
    env = os.environ.get("KIT_DB_URL", "").strip()
    return env or f"sqlite:///{DEFAULT_DB_PATH}"


def utc_now() -> str:
    """The current UTC time as ISO 8601 text with microseconds and a ``Z`` (stored as text so that it
    reads back byte for byte on every backend; the ledger hashes it)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------------
# tables (schema version 1)
# ------------------------------------------------------------------------------------------------


def _define_v1(md: sa.MetaData) -> dict[str, sa.Table]:
    """The version 1 tables on ``md``. Frozen: a later version changes tables by a migration."""
    t = {}
    t["schema_version"] = sa.Table(
        "schema_version",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("applied_at", sa.String(32), nullable=False),
    )
    # registry ------------------------------------------------------------------------------------
    t["arch_versions"] = sa.Table(
        "arch_versions",
        md,
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("arch_hash", sa.String(64), primary_key=True),
        sa.Column("major", sa.Integer, nullable=False),
        sa.Column("architecture", sa.JSON, nullable=False),
        sa.Column("first_registered_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("scope", "name", "major", name="uq_arch_versions_major"),
    )
    t["models"] = sa.Table(
        "models",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("arch_hash", sa.String(64), nullable=False),
        sa.Column("major", sa.Integer, nullable=False),
        sa.Column("trained_on", sa.Date, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("forecaster", sa.Boolean, nullable=False),
        sa.Column("checkpoint_path", sa.String(1000), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(64), nullable=False),
        sa.Column("source_checkpoint", sa.String(1000), nullable=False),
        sa.Column("oos_sharpe", sa.Double, nullable=True),
        sa.Column("benchmark_sharpe", sa.Double, nullable=True),
        sa.Column("registered_at", sa.String(32), nullable=False),
        sa.Column("extra", sa.JSON, nullable=True),
        sa.UniqueConstraint("scope", "name", "major", "trained_on", name="uq_models_version"),
        sa.CheckConstraint("status IN ('candidate', 'active', 'retired')", name="ck_models_status"),
        sqlite_autoincrement=True,
    )
    # at most one active model per scope, enforced by the database itself
    sa.Index(
        "ux_models_one_active_per_scope",
        t["models"].c.scope,
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    t["model_folds"] = sa.Table(
        "model_folds",
        md,
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("fold", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("test_start", sa.Date, nullable=True),
        sa.Column("test_end", sa.Date, nullable=True),
        sa.Column("n_obs", sa.Integer, nullable=False),
        sa.Column("direction_accuracy", sa.Double, nullable=True),
        sa.Column("mape", sa.Double, nullable=True),
        sa.Column("leakage_rows", sa.Integer, nullable=False),
        sa.Column("sharpe_ratio", sa.Double, nullable=True),
        sa.Column("benchmark_sharpe", sa.Double, nullable=True),
        sa.Column("extra", sa.JSON, nullable=True),
    )
    t["model_history"] = sa.Table(
        "model_history",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False, index=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=True),
        sqlite_autoincrement=True,
    )
    t["gate_evaluations"] = sa.Table(
        "gate_evaluations",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False, index=True),
        sa.Column("evaluated_at", sa.String(32), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("previous_active_id", sa.Integer, nullable=True),
        sqlite_autoincrement=True,
    )
    t["gate_checks"] = sa.Table(
        "gate_checks",
        md,
        sa.Column("evaluation_id", sa.Integer, sa.ForeignKey("gate_evaluations.id"), primary_key=True),
        sa.Column("criterion", sa.String(64), primary_key=True),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("op", sa.String(4), nullable=False),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
    )
    # ledger --------------------------------------------------------------------------------------
    t["ledger_snapshots"] = sa.Table(
        "ledger_snapshots",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("run_date", sa.Date, nullable=False),
        sa.Column("close", sa.Double, nullable=False),
        sa.Column("direction", sa.SmallInteger, nullable=False),
        sa.Column("position", sa.Double, nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("model_id", "symbol", "run_date", name="uq_ledger_key"),
        sa.CheckConstraint("direction IN (-1, 0, 1)", name="ck_ledger_direction"),
        sqlite_autoincrement=True,
    )
    t["ledger_forecasts"] = sa.Table(
        "ledger_forecasts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("snapshot_seq", sa.Integer, sa.ForeignKey("ledger_snapshots.seq"), nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("forecast", sa.Double, nullable=True),
        # fill columns: written once by fillback, bound to the snapshot's hash by fill_hash
        sa.Column("target_date", sa.Date, nullable=True),
        sa.Column("actual_close", sa.Double, nullable=True),
        sa.Column("actual_return", sa.Double, nullable=True),
        sa.Column("pct_error", sa.Double, nullable=True),
        sa.Column("direction_correct", sa.Boolean, nullable=True),
        sa.Column("filled_at", sa.String(32), nullable=True),
        sa.Column("fill_hash", sa.String(64), nullable=True),
        sa.UniqueConstraint("snapshot_seq", "horizon", name="uq_ledger_forecast"),
        sqlite_autoincrement=True,
    )
    sa.Index("ix_ledger_forecasts_pending", t["ledger_forecasts"].c.filled_at)
    t["ledger_head"] = sa.Table(
        "ledger_head",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_ledger_head_single_row"),
    )
    return t


metadata = sa.MetaData()
TABLES = _define_v1(metadata)
schema_version_table = TABLES["schema_version"]
arch_versions = TABLES["arch_versions"]
models = TABLES["models"]
model_folds = TABLES["model_folds"]
model_history = TABLES["model_history"]
gate_evaluations = TABLES["gate_evaluations"]
gate_checks = TABLES["gate_checks"]
ledger_snapshots = TABLES["ledger_snapshots"]
ledger_forecasts = TABLES["ledger_forecasts"]
ledger_head = TABLES["ledger_head"]


def _migration_1(conn: Connection) -> None:
    md = sa.MetaData()
    tables = _define_v1(md)
    md.create_all(conn, tables=[t for name, t in tables.items() if name != "schema_version"])


def _migration_2(conn: Connection) -> None:
    from .paper import define_tables

    md = sa.MetaData()
    md.create_all(conn, tables=list(define_tables(md).values()))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "registry (models, architecture versions, folds, gate, history) and ledger (snapshots, forecasts, head)", _migration_1),
    (2, "paper trading: simulated broker (accounts, positions, orders, fills) and the daily loop (runs, targets, checks, order journal)", _migration_2),
]
LATEST_VERSION = MIGRATIONS[-1][0]


# ------------------------------------------------------------------------------------------------
# engines and transactions
# ------------------------------------------------------------------------------------------------

_ENGINES: dict[tuple[str, int], Engine] = {}
_READY: set[int] = set()
_LOCK = threading.Lock()


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the kit emits BEGIN itself (see module docstring)
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("kit_sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _make_engine(url: str) -> Engine:
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(u, pool_pre_ping=True)


def get_engine(db=None, *, ensure: bool = True) -> Engine:
    """An engine for ``db``, with the schema brought to :data:`LATEST_VERSION`.

    Parameters
    ----------
    db : None, str or Engine
        None: :func:`default_url`; a SQLAlchemy URL string; or an existing Engine (returned as is,
        its schema ensured once).
    ensure : bool
        Create or upgrade the schema (once per engine and process).

    Engines are cached per URL and process (a forked child gets its own).

    Raises
    ------
    SchemaVersionError
        The database was written by a newer kit.
    sqlalchemy.exc.ArgumentError
        ``db`` is not a valid URL.
    """
    if isinstance(db, Engine):
        engine = db
    else:
        url = default_url() if db is None or str(db) == "" else str(db)
        key = (url, os.getpid())
        with _LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                engine = _ENGINES[key] = _make_engine(url)
    if ensure and id(engine) not in _READY:
        ensure_schema(engine)
        _READY.add(id(engine))
    return engine


def dispose_engines() -> None:
    """Close every cached engine's connections and forget them (tests, or before a fork)."""
    with _LOCK:
        for engine in _ENGINES.values():
            _READY.discard(id(engine))
            engine.dispose()
        _ENGINES.clear()


@contextlib.contextmanager
def write_tx(engine: Engine, lock: str) -> Iterator[Connection]:
    """A serialised write transaction: commit on normal exit, roll back on any exception.

    ``lock`` names the writers to serialise with (``"schema"``, ``"registry"``, ``"ledger"`` or ``"paper"``):
    on PostgreSQL a transaction-scoped advisory lock per name; on SQLite the database-wide write
    lock of ``BEGIN IMMEDIATE`` (so every writer is serialised with every other).

    Raises
    ------
    ValueError
        Unknown lock name.
    """
    if lock not in _LOCK_KEYS:
        raise ValueError(f"lock must be one of {sorted(_LOCK_KEYS)}, got {lock!r}")
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(kit_sqlite_begin="IMMEDIATE")
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEYS[lock]})
            yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read transaction (one consistent snapshot on SQLite; READ COMMITTED on PostgreSQL);
    always rolled back."""
    with engine.connect() as conn:
        with conn.begin() as tx:
            yield conn
            tx.rollback()


def _current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    v = conn.execute(sa.select(sa.func.max(schema_version_table.c.version))).scalar()
    return int(v or 0)


def schema_version(db=None) -> int:
    """The schema version recorded in the database (0 when it has no ``schema_version`` table)."""
    engine = get_engine(db, ensure=False)
    with read_tx(engine) as conn:
        return _current_version(conn)


def ensure_schema(engine: Engine) -> int:
    """Create or upgrade the schema to :data:`LATEST_VERSION`; returns the version now recorded.

    All missing migrations run in one serialised transaction; a concurrent process doing the same
    waits and then finds nothing left to do.

    Raises
    ------
    SchemaVersionError
        The database records a version newer than :data:`LATEST_VERSION`, or the list of
        migrations has a gap.
    """
    versions = [v for v, _, _ in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise SchemaVersionError(f"MIGRATIONS must be numbered 1, 2, ... without gaps, got {versions}")
    latest = versions[-1]
    with read_tx(engine) as conn:
        current = _current_version(conn)
    if current == latest:
        return current
    with write_tx(engine, "schema") as conn:
        current = _current_version(conn)
        if current > latest:
            raise SchemaVersionError(
                f"database {engine.url.render_as_string(hide_password=True)} has schema version {current}; "
                f"this kit knows versions up to {latest} (upgrade the kit)"
            )
        if current == 0:
            schema_version_table.create(conn, checkfirst=True)
        for version, description, migrate in MIGRATIONS:
            if version > current:
                migrate(conn)
                conn.execute(
                    schema_version_table.insert().values(version=version, description=description, applied_at=utc_now())
                )
                current = version
    return current


def jsonable(obj):
    """``obj`` with numpy scalars, dates, paths and tuples turned into JSON types (non-finite floats
    become None), for the JSON columns."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dt.date | dt.datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj
