"""The whole database schema of the kit, in one place, and its migrations.

Schema versions
---------------
A ``schema_version`` table records each applied migration (version, description, time).
:func:`ensure_schema` (:func:`kit.store.engine.ensure_schema`, called by :func:`kit.store.engine.get_engine`) applies the missing ones, in order, in one
serialised transaction (SQLite and PostgreSQL both have transactional DDL, so a failed upgrade leaves
the previous version intact). A database written by a newer kit raises :class:`SchemaVersionError`.
Why no Alembic: ``docs/decisions/0003-no-alembic.md``. Rule for a future migration: append ``(version, description, function)`` to
:data:`MIGRATIONS`; the function receives the open connection and must bring a database of the
previous version to the new one (for example ``ALTER TABLE ... ADD COLUMN``), and the table
definitions below are then updated to the new version. Version 1's function builds the version 1
tables from their own frozen definitions (:func:`_define_v1`).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["metadata", "TABLES", "MIGRATIONS", "LATEST_VERSION"]



def _define_v1(md: sa.MetaData, version: int = 1) -> dict[str, sa.Table]:
    """The version 1 tables on ``md`` as of schema ``version`` (frozen per version: a later version
    changes tables by a migration; version 3 adds ``ledger_head.scheme``, the ledger's hash scheme;
    version 5 adds ``ledger_forecasts.forecast_q10`` and ``forecast_q90``)."""
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
        # quantile forecasters (version 5): the 10 % and 90 % quantiles; ``forecast`` is then the median
        *([sa.Column("forecast_q10", sa.Double, nullable=True), sa.Column("forecast_q90", sa.Double, nullable=True)] if version >= 5 else []),
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
        *([sa.Column("scheme", sa.String(16), nullable=False, server_default="sha256")] if version >= 3 else []),
        sa.CheckConstraint("id = 1", name="ck_ledger_head_single_row"),
    )
    return t



def _define_v2(md, version: int = 2):
    """The paper-trading tables on SQLAlchemy MetaData ``md`` as of schema ``version`` (2 or 3; each
    version frozen: a later version changes them through a migration below). Version 3 allows the
    run status ``failed`` and keys the order journal by broker (column ``broker``).

    ``sim_accounts``, ``sim_positions``, ``sim_orders``, ``sim_fills``: the simulated broker's
    state. ``paper_runs`` (one row per account and trading day, status ``started`` then ``done``),
    ``paper_targets`` (model position, target and accepted weight per symbol and day),
    ``paper_checks`` (every pre-trade violation and its action) and ``paper_orders`` (the loop's
    journal of the orders it sent to whichever broker, by client order id).
    """
    t = {}
    t["sim_accounts"] = sa.Table(
        "sim_accounts", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("cash", sa.Double, nullable=False),
        sa.Column("initial_cash", sa.Double, nullable=False),
        sa.Column("cost_bps", sa.Double, nullable=False),
        sa.Column("slippage_bps", sa.Double, nullable=False),
        sa.Column("last_date", sa.Date, nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    t["sim_positions"] = sa.Table(
        "sim_positions", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("avg_price", sa.Double, nullable=False),
        sa.Column("last_price", sa.Double, nullable=True),
    )
    t["sim_orders"] = sa.Table(
        "sim_orders", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decided_on", sa.Date, nullable=True),
        sa.Column("submitted_at", sa.String(32), nullable=False),
        sa.Column("filled_qty", sa.Double, nullable=False, default=0.0),
        sa.Column("filled_avg_price", sa.Double, nullable=True),
        sa.Column("commission", sa.Double, nullable=False, default=0.0),
        sa.Column("fill_date", sa.Date, nullable=True),
        sa.Column("filled_at", sa.String(32), nullable=True),
        sa.Column("reject_reason", sa.String(500), nullable=True),
        sa.UniqueConstraint("account", "client_order_id", name="uq_sim_orders_client_id"),
        sa.CheckConstraint("status IN ('new', 'submitted', 'partially_filled', 'filled', 'rejected', 'cancelled')", name="ck_sim_orders_status"),
        sqlite_autoincrement=True,
    )
    t["sim_fills"] = sa.Table(
        "sim_fills", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("sim_orders.id"), nullable=False, unique=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("price", sa.Double, nullable=False),
        sa.Column("commission", sa.Double, nullable=False),
        sa.Column("fill_date", sa.Date, nullable=False),
        sqlite_autoincrement=True,
    )
    t["paper_runs"] = sa.Table(
        "paper_runs", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("broker", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("equity", sa.Double, nullable=True),
        sa.Column("cash", sa.Double, nullable=True),
        sa.Column("n_orders", sa.Integer, nullable=True),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("info", sa.JSON, nullable=True),
        sa.CheckConstraint(
            "status IN ('started', 'done', 'failed')" if version >= 3 else "status IN ('started', 'done')", name="ck_paper_runs_status"
        ),
    )
    t["paper_targets"] = sa.Table(
        "paper_targets", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("position", sa.Double, nullable=True),
        sa.Column("ex_ante_vol", sa.Double, nullable=True),
        sa.Column("target_weight", sa.Double, nullable=False),
        sa.Column("accepted_weight", sa.Double, nullable=False),
        sa.Column("current_weight", sa.Double, nullable=False),
        sa.Column("close", sa.Double, nullable=True),
    )
    t["paper_checks"] = sa.Table(
        "paper_checks", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("check", sa.String(64), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("limit", sa.Double, nullable=True),
        sa.Column("action", sa.String(500), nullable=False),
        sqlite_autoincrement=True,
    )
    t["paper_orders"] = sa.Table(
        "paper_orders", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("client_order_id", sa.String(128), primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("qty", sa.Double, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=True),
        sa.Column("filled_qty", sa.Double, nullable=True),
        sa.Column("filled_avg_price", sa.Double, nullable=True),
        sa.Column("reject_reason", sa.String(500), nullable=True),
        sa.Column("updated_at", sa.String(32), nullable=False),
        *([sa.Column("broker", sa.String(32), nullable=False, server_default="sim")] if version >= 3 else []),
    )
    return t



def _define_v4(md):
    """The monitoring tables on SQLAlchemy MetaData ``md`` (schema version 4; frozen: a later version
    changes them through a migration).

    ``drift_checks``: one row per ``(account, as_of, check, subject)`` with ``scope``, ``model_id``
    (the model whose training window or ledger record was checked; NULL when none), ``value,
    threshold, p_value`` (NULL when absent), ``verdict`` (``drift``/``ok``/``insufficient_data``,
    checked by the database), ``n`` and ``recorded_at`` (:mod:`kit.analytics.drift` defines the
    checks). ``monitor_runs``: one row per account and trading day of the daily loop
    (:mod:`kit.live.loop`): ``status`` (``started``, ``done``, ``failed``), the stage reached,
    ``needs_person``, the model traded, and JSON columns ``alerts``, ``retrain``, ``metrics``, ``info``.
    """
    t = {}
    t["drift_checks"] = sa.Table(
        "drift_checks", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("check", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("model_id", sa.Integer, nullable=True),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("p_value", sa.Double, nullable=True),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("n", sa.Integer, nullable=True),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.CheckConstraint("verdict IN ('drift', 'ok', 'insufficient_data')", name="ck_drift_checks_verdict"),
    )
    sa.Index("ix_drift_checks_scope_date", t["drift_checks"].c.scope, t["drift_checks"].c.as_of)
    t["monitor_runs"] = sa.Table(
        "monitor_runs", md,
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("needs_person", sa.Boolean, nullable=False, default=False),
        sa.Column("model_id", sa.Integer, nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("alerts", sa.JSON, nullable=True),
        sa.Column("retrain", sa.JSON, nullable=True),
        sa.Column("metrics", sa.JSON, nullable=True),
        sa.Column("info", sa.JSON, nullable=True),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.CheckConstraint("status IN ('started', 'done', 'failed')", name="ck_monitor_runs_status"),
    )
    return t



metadata = sa.MetaData()
TABLES = {**_define_v1(metadata, 5), **_define_v2(metadata, 3), **_define_v4(metadata)}
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
drift_checks = TABLES["drift_checks"]
monitor_runs = TABLES["monitor_runs"]


def _migration_1(conn: Connection) -> None:
    md = sa.MetaData()
    tables = _define_v1(md)
    md.create_all(conn, tables=[t for name, t in tables.items() if name != "schema_version"])


def _migration_2(conn: Connection) -> None:
    md = sa.MetaData()
    md.create_all(conn, tables=list(_define_v2(md).values()))


def _migration_3(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE paper_orders ADD COLUMN broker VARCHAR(32) NOT NULL DEFAULT 'sim'"))
    conn.execute(sa.text("ALTER TABLE ledger_head ADD COLUMN scheme VARCHAR(16) NOT NULL DEFAULT 'sha256'"))
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE paper_runs DROP CONSTRAINT ck_paper_runs_status"))
        conn.execute(sa.text("ALTER TABLE paper_runs ADD CONSTRAINT ck_paper_runs_status CHECK (status IN ('started', 'done', 'failed'))"))
        return
    # SQLite cannot change a constraint: rebuild the table with the version 3 definition, rows kept
    new = _define_v2(sa.MetaData(), 3)["paper_runs"]
    ddl = str(sa.schema.CreateTable(new).compile(dialect=conn.dialect)).replace("CREATE TABLE paper_runs (", "CREATE TABLE paper_runs_v3 (", 1)
    cols = ", ".join(c.name for c in new.columns)
    conn.execute(sa.text(ddl))
    conn.execute(sa.text(f"INSERT INTO paper_runs_v3 ({cols}) SELECT {cols} FROM paper_runs"))
    conn.execute(sa.text("DROP TABLE paper_runs"))
    conn.execute(sa.text("ALTER TABLE paper_runs_v3 RENAME TO paper_runs"))


def _migration_4(conn: Connection) -> None:
    md = sa.MetaData()
    md.create_all(conn, tables=list(_define_v4(md).values()))


def _migration_5(conn: Connection) -> None:
    double = sa.Double().compile(dialect=conn.dialect)
    for col in ("forecast_q10", "forecast_q90"):
        conn.execute(sa.text(f"ALTER TABLE ledger_forecasts ADD COLUMN {col} {double}"))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "registry (models, architecture versions, folds, gate, history) and ledger (snapshots, forecasts, head)", _migration_1),
    (2, "paper trading: simulated broker (accounts, positions, orders, fills) and the daily loop (runs, targets, checks, order journal)", _migration_2),
    (3, "paper trading: run status 'failed', order journal keyed by broker; ledger hash scheme (keyed HMAC for new ledgers)", _migration_3),
    (4, "monitoring: drift checks and the daily loop's runs (alerts, retraining, published metrics)", _migration_4),
    (5, "ledger: quantile forecasts (forecast_q10, forecast_q90 beside the median in forecast)", _migration_5),
]
LATEST_VERSION = MIGRATIONS[-1][0]
