"""Storage engines and transactions for the registry, the ledger and the paper loop.

SQLAlchemy Core. The database is given by a SQLAlchemy URL: the default is a SQLite file
``data/state/kit.db`` in the repository (:func:`kit.paths.default_db_url`) (``data/state/`` is ignored by git, and so are SQLite's
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
  registry, ledger, paper, monitoring); the lock is released at commit or rollback, including when
  the client process dies and the server aborts its transaction.
* Other dialects: a plain transaction; unique constraints still refuse duplicates.

The schema and its migrations live in :mod:`kit.store.schema`; :func:`ensure_schema` applies them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..base.locks import LockHeldError, file_lock
from ..paths import default_db_url
from .schema import MIGRATIONS, schema_version_table

__all__ = [
    "SchemaVersionError",
    "DatabaseLockedError",
    "db_lock",
    "default_url",
    "get_engine",
    "dispose_engines",
    "write_tx",
    "read_tx",
    "ensure_schema",
    "schema_version",
    "utc_now",
]



SQLITE_BUSY_TIMEOUT_S = 60.0



_LOCK_KEYS = {"schema": 731_001, "registry": 731_002, "ledger": 731_003, "paper": 731_004, "monitoring": 731_005}



class SchemaVersionError(RuntimeError):
    """The database's schema version is newer than this kit knows, or a migration is missing."""



def utc_now() -> str:
    """The current UTC time as ISO 8601 text with microseconds and a ``Z`` (stored as text so that it
    reads back byte for byte on every backend; the ledger hashes it)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")



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

    ``lock`` names the writers to serialise with (``"schema"``, ``"registry"``, ``"ledger"``, ``"paper"`` or
    ``"monitoring"``):
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



def default_url() -> str:
    """The database URL used when none is given: ``$KIT_DB_URL`` (when set and not blank), else the
    SQLite file ``data/state/kit.db`` (:func:`kit.paths.default_db_url`)."""
    return default_db_url()


class DatabaseLockedError(LockHeldError):
    """Another process holds the named database lock (the message names it and the database)."""


@contextlib.contextmanager
def db_lock(engine: Engine, name: str) -> Iterator[None]:
    """Mutual exclusion tied to the database itself, held for the ``with`` block.

    PostgreSQL: a session-level ``pg_try_advisory_lock`` on a connection kept open for the block
    (released by the server when the block ends or the client dies), so it holds across machines
    that share the database. SQLite: an exclusive ``flock`` on ``<database file>.<name>.lock`` beside
    the database file (released by the kernel when the process dies), so it holds for every process
    that opens that file, whatever its working folders. Other dialects are refused.

    Raises
    ------
    DatabaseLockedError
        The lock is held.
    ValueError
        ``name`` is not letters, digits, ``.``, ``_`` or ``-``; or a dialect without a lock; or an
        in-memory SQLite database (nothing to share).
    """
    import hashlib
    import re

    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name or ""):
        raise ValueError(f"lock name must be letters, digits, '.', '_' or '-', got {name!r}")
    where = engine.url.render_as_string(hide_password=True)
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"kit:{name}".encode()).digest()[:8], "big", signed=True)
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise DatabaseLockedError(f"another process holds the database lock {name!r} on {where}; nothing done")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if engine.dialect.name == "sqlite":
        db_file = engine.url.database
        if db_file in (None, "", ":memory:"):
            raise ValueError("db_lock needs a database file, not an in-memory SQLite database")
        with file_lock(Path(f"{db_file}.{name}.lock"), f"another process (database lock {name!r})", DatabaseLockedError):
            yield
        return
    raise ValueError(f"db_lock supports PostgreSQL and SQLite, not {engine.dialect.name!r}")
