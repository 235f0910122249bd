"""kit.db: default URL, schema creation and versioned upgrades, serialised write transactions.

Runs on SQLite by default and on PostgreSQL when ``KIT_DB_URL`` names one (scripts/postgres_test.sh).
"""

import pytest
import sqlalchemy as sa

from kit.paths import REPO_ROOT
from kit.store import engine as kdb
from kit.store import schema as S
from tests._ledger_worker import fresh_db, is_postgres_url, spawn, wait_for

EXPECTED_TABLES = {
    "schema_version", "arch_versions", "models", "model_folds", "model_history", "gate_evaluations", "gate_checks",
    "ledger_snapshots", "ledger_forecasts", "ledger_head",
}


@pytest.fixture
def url(tmp_path):
    with fresh_db(tmp_path) as u:
        yield u


def test_default_url_is_a_sqlite_file_under_data_unless_overridden(monkeypatch):
    monkeypatch.delenv("KIT_DB_URL", raising=False)
    monkeypatch.delenv("KIT_STATE_DIR", raising=False)
    u = kdb.default_url()
    assert u == f"sqlite:///{REPO_ROOT / 'data' / 'state' / 'kit.db'}"
    monkeypatch.setenv("KIT_DB_URL", "postgresql+psycopg://someone@somewhere/db")
    assert kdb.default_url() == "postgresql+psycopg://someone@somewhere/db"
    monkeypatch.setenv("KIT_DB_URL", "  ")
    assert kdb.default_url().startswith("sqlite:///")


def test_schema_is_created_at_the_latest_version(url):
    engine = kdb.get_engine(url)
    assert kdb.schema_version(url) == S.LATEST_VERSION == len(S.MIGRATIONS) >= 2
    assert EXPECTED_TABLES <= set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        rows = conn.execute(sa.select(S.schema_version_table)).all()
    assert [r.version for r in rows] == list(range(1, S.LATEST_VERSION + 1))
    # ensuring again changes nothing
    assert kdb.ensure_schema(engine) == S.LATEST_VERSION
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(S.schema_version_table)).scalar() == S.LATEST_VERSION


def test_a_database_from_a_newer_kit_is_refused(url):
    engine = kdb.get_engine(url)
    with engine.begin() as conn:
        conn.execute(S.schema_version_table.insert().values(version=99, description="future", applied_at=kdb.utc_now()))
    kdb.dispose_engines()
    with pytest.raises(kdb.SchemaVersionError, match="schema version 99"):
        kdb.get_engine(url)


def test_migrations_upgrade_an_existing_database_and_keep_its_rows(url, monkeypatch):
    engine = kdb.get_engine(url)
    with engine.begin() as conn:
        conn.execute(S.arch_versions.insert().values(scope="AAA", name="m", arch_hash="h", major=1, architecture={"model": "m"}, first_registered_at="t"))
    kdb.dispose_engines()

    def add_note(conn):
        conn.execute(sa.text("ALTER TABLE arch_versions ADD COLUMN note VARCHAR(20)"))

    monkeypatch.setattr(kdb, "MIGRATIONS", [*S.MIGRATIONS, (S.LATEST_VERSION + 1, "arch_versions.note", add_note)])
    engine = kdb.get_engine(url)
    assert kdb.schema_version(url) == S.LATEST_VERSION + 1
    assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("arch_versions")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT scope, major FROM arch_versions")).all() == [("AAA", 1)]


def test_a_failing_migration_leaves_the_previous_version_intact(url, monkeypatch):
    engine = kdb.get_engine(url)
    kdb.dispose_engines()

    def broken(conn):
        conn.execute(sa.text("ALTER TABLE arch_versions ADD COLUMN half VARCHAR(5)"))
        raise RuntimeError("migration failed half-way")

    monkeypatch.setattr(kdb, "MIGRATIONS", [*S.MIGRATIONS, (S.LATEST_VERSION + 1, "broken", broken)])
    with pytest.raises(RuntimeError, match="half-way"):
        kdb.get_engine(url)
    monkeypatch.undo()
    kdb.dispose_engines()
    engine = kdb.get_engine(url)
    assert kdb.schema_version(url) == S.LATEST_VERSION
    assert "half" not in {c["name"] for c in sa.inspect(engine).get_columns("arch_versions")}


def test_migrations_must_be_numbered_without_gaps(url, monkeypatch):
    engine = kdb.get_engine(url, ensure=False)
    monkeypatch.setattr(kdb, "MIGRATIONS", [*S.MIGRATIONS, (S.LATEST_VERSION + 2, "gap", lambda conn: None)])
    with pytest.raises(kdb.SchemaVersionError, match="without gaps"):
        kdb.ensure_schema(engine)


def test_write_tx_commits_or_rolls_back_everything(url):
    engine = kdb.get_engine(url)
    row = {"scope": "AAA", "name": "m", "architecture": {"model": "m"}, "first_registered_at": "t"}
    with pytest.raises(RuntimeError, match="boom"):
        with kdb.write_tx(engine, "registry") as conn:
            conn.execute(S.arch_versions.insert(), [{**row, "arch_hash": "h1", "major": 1}, {**row, "arch_hash": "h2", "major": 2}])
            raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(S.arch_versions)).scalar() == 0
    with kdb.write_tx(engine, "registry") as conn:
        conn.execute(S.arch_versions.insert(), [{**row, "arch_hash": "h1", "major": 1}, {**row, "arch_hash": "h2", "major": 2}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(S.arch_versions)).scalar() == 2
    with pytest.raises(ValueError, match="lock must be one of"):
        with kdb.write_tx(engine, "everything"):
            pass


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(url):
    if is_postgres_url(url):
        pytest.skip("SQLite pragmas")
    engine = kdb.get_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_engines_are_cached_per_url(url):
    assert kdb.get_engine(url) is kdb.get_engine(url)
    engine = kdb.get_engine(url)
    assert kdb.get_engine(engine) is engine


@pytest.mark.slow
def test_two_processes_creating_the_schema_at_once_both_succeed(url, tmp_path):
    go = tmp_path / "go"
    procs = [spawn("schema", url=url, go_file=str(go)) for _ in range(2)]
    go.write_text("go")
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert f'"version": {S.LATEST_VERSION}' in out
    engine = kdb.get_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(S.schema_version_table)).scalar() == S.LATEST_VERSION
    wait_for(tmp_path / "go")


def test_db_lock_excludes_a_second_holder_and_is_released(url):
    from kit.store.engine import DatabaseLockedError, db_lock

    engine = kdb.get_engine(url)
    with db_lock(engine, "paper-x"):
        with pytest.raises(DatabaseLockedError, match="paper-x"):
            with db_lock(engine, "paper-x"):
                pass
        with db_lock(engine, "paper-y"):  # another name is another lock
            pass
    with db_lock(engine, "paper-x"):  # released
        pass
    with pytest.raises(ValueError, match="lock name"):
        with db_lock(engine, "../x"):
            pass
