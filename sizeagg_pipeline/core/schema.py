"""The one module that knows the schema: the seven tables of docs/contract.md, the
`capacity_forecasts` and `capacity_limit_forecasts` tables the forecast asset writes,
the `capacity_limits` and `capacity_alerts` tables of the alerts (docs/alerts.md),
`raw_horizons` (retention), and `sizeagg_executions`, which links executions to their
sessions.

Table and column names are the origin platform's, so sizeagg can be pointed at an
existing database of that platform. Every default lives in the database (other
programs write these tables with plain SQL), and every ``id`` auto-increments on
every backend.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

# An INTEGER PRIMARY KEY is SQLite's auto-incrementing rowid; BIGINT is not.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Percent = sa.Numeric(10, 2)
PERCENT_LIMIT_HUNDREDTHS = 9_999_999_999  # ±99,999,999.99, the numeric(10,2) bound


def _ts(name: str, *, nullable: bool = True, default_now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default_now else None,
    )


def _id() -> sa.Column:
    return sa.Column("id", Id, primary_key=True, autoincrement=True)


def _one_row_per_series(table: sa.Table, *leading: str) -> None:
    """Unique keys of a table with a row per database (database_name set) and per instance
    (database_name NULL): NULLs are distinct in a unique constraint, so one partial index each."""
    columns = [table.c[name] for name in (*leading, "instance_id")]
    database = table.c.database_name
    for kind, where in (("database", database.isnot(None)), ("instance", database.is_(None))):
        extra = [database] if kind == "database" else []
        sa.Index(
            f"uq_{table.name}_{kind}",
            *columns,
            *extra,
            unique=True,
            postgresql_where=where,
            sqlite_where=where,
        )


instances = sa.Table(
    "instances",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("db_type", sa.String(50), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    _ts("deleted_at"),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
)

database_size_stats = sa.Table(
    "database_size_stats",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("database_name", sa.String(255), nullable=False),
    sa.Column("size_mb", sa.BigInteger, nullable=False),
    sa.Column("data_size_mb", sa.BigInteger),
    sa.Column("log_size_mb", sa.BigInteger),
    sa.Column("collected_date", sa.Date, nullable=False),
    _ts("collected_at", nullable=False, default_now=True),
    _ts("created_at", nullable=False, default_now=True),
    sa.UniqueConstraint("instance_id", "database_name", "collected_date", name="uq_daily_database_size"),
    sa.Index("ix_database_size_stats_collected_date", "collected_date"),
)

instance_size_stats = sa.Table(
    "instance_size_stats",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("total_size_mb", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("database_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("collected_date", sa.Date, nullable=False),
    _ts("collected_at", nullable=False, default_now=True),
    sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    _ts("deleted_at"),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    sa.Index("ix_instance_size_stats_collected_date", "collected_date"),
)


def not_deleted(dialect: str) -> sa.ColumnElement[bool]:
    """The predicate of `uq_instance_size_stats_instance_date`, per dialect.

    An upsert's `ON CONFLICT … WHERE` must repeat it in the same form (PostgreSQL and
    SQLite do not prove `IS false` and `= false` equivalent). On PostgreSQL it is the
    origin's `is_deleted = false`, so one upsert fits origin tables and sizeagg's own.
    """
    column = instance_size_stats.c.is_deleted
    return column == sa.false() if dialect == "postgresql" else column.is_(sa.false())


sa.Index(
    "uq_instance_size_stats_instance_date",
    instance_size_stats.c.instance_id,
    instance_size_stats.c.collected_date,
    unique=True,
    postgresql_where=not_deleted("postgresql"),
    sqlite_where=not_deleted("sqlite"),
)

# The unique keys of the aggregate tables lead with (period_type, period_start):
# one partition's slice is then contiguous in the index instead of scattered over
# every instance's pages (docs/performance.md). Same columns, same uniqueness.
database_size_aggregations = sa.Table(
    "database_size_aggregations",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("database_name", sa.String(255), nullable=False),
    sa.Column("period_type", sa.String(20), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("avg_size_mb", sa.BigInteger, nullable=False),
    sa.Column("max_size_mb", sa.BigInteger, nullable=False),
    sa.Column("min_size_mb", sa.BigInteger, nullable=False),
    sa.Column("data_count", sa.Integer, nullable=False),
    sa.Column("avg_data_size_mb", sa.BigInteger),
    sa.Column("max_data_size_mb", sa.BigInteger),
    sa.Column("min_data_size_mb", sa.BigInteger),
    sa.Column("avg_log_size_mb", sa.BigInteger),
    sa.Column("max_log_size_mb", sa.BigInteger),
    sa.Column("min_log_size_mb", sa.BigInteger),
    sa.Column("size_change_mb", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("size_change_percent", Percent, nullable=False, server_default="0"),
    sa.Column("data_size_change_mb", sa.BigInteger),
    sa.Column("data_size_change_percent", Percent),
    sa.Column("log_size_change_mb", sa.BigInteger),
    sa.Column("log_size_change_percent", Percent),
    sa.Column("growth_rate", Percent, nullable=False, server_default="0"),
    _ts("calculated_at", nullable=False, default_now=True),
    _ts("created_at", nullable=False, default_now=True),
    sa.UniqueConstraint(
        "period_type",
        "period_start",
        "instance_id",
        "database_name",
        name="uq_database_size_aggregation",
    ),
)

instance_size_aggregations = sa.Table(
    "instance_size_aggregations",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("period_type", sa.String(20), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("total_size_mb", sa.BigInteger, nullable=False),
    sa.Column("avg_size_mb", sa.BigInteger, nullable=False),
    sa.Column("max_size_mb", sa.BigInteger, nullable=False),
    sa.Column("min_size_mb", sa.BigInteger, nullable=False),
    sa.Column("data_count", sa.Integer, nullable=False),
    sa.Column("database_count", sa.Integer, nullable=False),
    sa.Column("avg_database_count", Percent),
    sa.Column("max_database_count", sa.Integer),
    sa.Column("min_database_count", sa.Integer),
    sa.Column("total_size_change_mb", sa.BigInteger),
    sa.Column("total_size_change_percent", Percent),
    sa.Column("database_count_change", sa.Integer),
    sa.Column("database_count_change_percent", Percent),
    sa.Column("growth_rate", Percent),
    sa.Column("trend_direction", sa.String(20)),
    _ts("calculated_at", nullable=False, default_now=True),
    _ts("created_at", nullable=False, default_now=True),
    sa.UniqueConstraint("period_type", "period_start", "instance_id", name="uq_instance_size_aggregation"),
)

sync_sessions = sa.Table(
    "sync_sessions",
    metadata,
    _id(),
    sa.Column("session_id", sa.String(36), nullable=False, unique=True),
    sa.Column("sync_type", sa.String(20), nullable=False),
    sa.Column("sync_category", sa.String(20), nullable=False, server_default="aggregation"),
    sa.Column("status", sa.String(20), nullable=False, server_default="running"),
    _ts("started_at", nullable=False, default_now=True),
    _ts("completed_at"),
    sa.Column("total_instances", sa.Integer, server_default="0"),
    sa.Column("successful_instances", sa.Integer, server_default="0"),
    sa.Column("failed_instances", sa.Integer, server_default="0"),
    sa.Column("created_by", sa.Integer),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    sa.Index("ix_sync_sessions_status", "status"),
)

sync_instance_records = sa.Table(
    "sync_instance_records",
    metadata,
    _id(),
    sa.Column(
        "session_id",
        sa.String(36),
        sa.ForeignKey("sync_sessions.session_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("instance_name", sa.String(255)),
    sa.Column("sync_category", sa.String(20), nullable=False, server_default="aggregation"),
    sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
    _ts("started_at"),
    _ts("completed_at"),
    sa.Column("items_synced", sa.Integer, server_default="0"),
    sa.Column("items_created", sa.Integer, server_default="0"),
    sa.Column("items_updated", sa.Integer, server_default="0"),
    sa.Column("items_deleted", sa.Integer, server_default="0"),
    sa.Column("error_message", sa.Text),
    sa.Column("sync_details", Json),
    _ts("created_at", default_now=True),
    sa.Index("ix_sync_instance_records_session_id", "session_id"),
)

# Written by the `capacity_forecast` asset (issue 6; not an origin table): one row per
# database (database_name set) and per instance (database_name NULL) and as_of date.
capacity_forecasts = sa.Table(
    "capacity_forecasts",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("database_name", sa.String(255)),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("window_days", sa.Integer, nullable=False),
    sa.Column("sample_days", sa.Integer, nullable=False),
    sa.Column("first_day", sa.Date, nullable=False),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("last_size_mb", sa.BigInteger, nullable=False),
    sa.Column("fitted_size_mb", sa.BigInteger, nullable=False),
    sa.Column("slope_mb_per_day", sa.Double, nullable=False),
    sa.Column("projected_30d_mb", sa.BigInteger, nullable=False),
    sa.Column("projected_90d_mb", sa.BigInteger, nullable=False),
    sa.Column("projected_180d_mb", sa.BigInteger, nullable=False),
    sa.Column("threshold_mb", sa.BigInteger, nullable=False),
    sa.Column("days_until_threshold", sa.Integer),
    sa.Column("r_squared", sa.Double),
    sa.Column("residual_scale_mb", sa.Double, nullable=False),
    sa.Column("outlier_days", sa.Integer, nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    _ts("calculated_at", nullable=False, default_now=True),
    _ts("created_at", nullable=False, default_now=True),
)
_one_row_per_series(capacity_forecasts, "as_of")

# Capacity limits a DBA sets (`sizeagg limits`; not an origin table): one per database
# (database_name set) or per instance total (database_name NULL), in MB.
capacity_limits = sa.Table(
    "capacity_limits",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("database_name", sa.String(255)),
    sa.Column("limit_mb", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    sa.CheckConstraint("limit_mb > 0", name="ck_capacity_limits_positive"),
)
_one_row_per_series(capacity_limits)

# Written by `capacity_forecast` next to capacity_forecasts, one row for each of its rows:
# the forecast against the series' capacity limit (or, without one, its threshold) and
# the severity the alerts and the digest use. A table of its own, because existing
# tables are never altered (docs/design.md).
capacity_limit_forecasts = sa.Table(
    "capacity_limit_forecasts",
    metadata,
    _id(),
    sa.Column("instance_id", sa.Integer, nullable=False),
    sa.Column("database_name", sa.String(255)),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("limit_mb", sa.BigInteger),
    sa.Column("used_percent", Percent),
    sa.Column("days_until_limit", sa.Integer),
    sa.Column("days_until_limit_low", sa.Integer),
    sa.Column("days_until_limit_high", sa.Integer),
    sa.Column("interval_percent", sa.Integer, nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    _ts("calculated_at", nullable=False, default_now=True),
)
_one_row_per_series(capacity_limit_forecasts, "as_of")

# Every alert sizeagg raised (docs/alerts.md): one row per key (kind, subject, business
# day), so an alert is sent once however often a sensor re-evaluates, with what each
# channel answered. Due deliveries are found by (status, next_attempt_at).
capacity_alerts = sa.Table(
    "capacity_alerts",
    metadata,
    _id(),
    sa.Column("key", sa.String(400), nullable=False, unique=True),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("link", sa.String(1000)),
    sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("next_attempt_at"),
    sa.Column("outcome", Json),
    _ts("first_seen_at", nullable=False, default_now=True),
    _ts("last_seen_at", nullable=False, default_now=True),
    _ts("sent_at"),
    sa.Index("ix_capacity_alerts_due", "status", "next_attempt_at"),
)

# sizeagg's memory of each raw table's history (issue 16; not an origin table), one row per
# raw table: the earliest raw day an aggregate write ever read, and the day before which
# sizeagg's own retention deleted every raw row. core/horizon.py reads them, with the
# table itself and the aggregates, to tell purged raw data from data never collected.
raw_horizons = sa.Table(
    "raw_horizons",
    metadata,
    sa.Column("raw_table", sa.String(255), primary_key=True),
    sa.Column("first_raw_day", sa.Date),
    sa.Column("purged_before", sa.Date),
    _ts("updated_at", nullable=False, default_now=True),
)

# sizeagg's own link between an aggregation execution, its session and the run of its
# session step (issue 18; not an origin table). The origin's sync_instance_records is
# shared with its other sync categories and grows with every session: looking an
# execution up there meant scanning JSON text, so every lookup goes through the
# indexed keys here instead. `owner` names the `sizeagg run` process that runs an
# execution in process (registered before its first run), so an execution whose
# process died before it had a session can be found and ended. No foreign key: the
# origin's sync_sessions is not sizeagg's to constrain.
sizeagg_executions = sa.Table(
    "sizeagg_executions",
    metadata,
    sa.Column("execution_id", sa.String(255), primary_key=True),
    sa.Column("session_id", sa.String(36)),
    sa.Column("session_run_id", sa.String(64)),
    sa.Column("owner", sa.Text),
    _ts("created_at", nullable=False, default_now=True),
    sa.Index("uq_sizeagg_executions_session_id", "session_id", unique=True),
    sa.Index("ix_sizeagg_executions_session_run_id", "session_run_id"),
)

RAW_TABLES = (instances, database_size_stats, instance_size_stats)


def active_instances_clause() -> sa.ColumnElement[bool]:
    """Active instances (docs/contract.md): is_active AND deleted_at IS NULL."""
    return sa.and_(instances.c.is_active.is_(sa.true()), instances.c.deleted_at.is_(None))


# --------------------------------------------------------------------------- engines


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # Autocommit at the driver level so that the "begin" hook below owns
    # transactions: BEGIN IMMEDIATE takes the write lock up front, so two writers
    # queue on busy_timeout instead of deadlocking on a read-to-write upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=600000",
        "temp_store=MEMORY",
        "cache_size=-65536",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# A write keeps two windows of groups in temp tables (aggregation._groups_table):
# 50,000 database-level groups are ~6 MB each, and PostgreSQL's default 8 MB of
# temp buffers would spill them to the OS between the statements that read them.
# The setting only caps the session's buffers (allocated as used), and it can only
# be changed before the session's first temp table, so it is set on connect.
POSTGRES_TEMP_BUFFERS = "64MB"


def _postgres_session(dbapi_connection: Any, _record: object) -> None:
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET temp_buffers = '{POSTGRES_TEMP_BUFFERS}'")
    dbapi_connection.autocommit = autocommit


def make_engine(url: str) -> sa.Engine:
    """An engine for the application database, tuned per dialect."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 600})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; psycopg2 is what is installed.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(parsed, pool_pre_ping=True)
    sa.event.listen(engine, "connect", _postgres_session)
    return engine


def backend(engine_or_conn: sa.Engine | sa.Connection) -> str:
    """'sqlite' or 'postgresql'."""
    return engine_or_conn.dialect.name


# --------------------------------------------------------------------------- init-db


@dataclass(frozen=True)
class InitReport:
    found: list[str]
    created: list[str]

    def __str__(self) -> str:
        lines = [f"found   {name}" for name in self.found]
        lines += [f"created {name}" for name in self.created]
        return "\n".join(lines)


def create_missing(bind: sa.Engine | sa.Connection) -> InitReport:
    """Create the tables that do not exist; never drop or alter existing ones.

    On an engine, in a transaction of its own; on a connection, in the caller's.
    """
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            return create_missing(conn)
    existing = set(sa.inspect(bind).get_table_names())
    found = [t.name for t in metadata.sorted_tables if t.name in existing]
    missing = [t for t in metadata.sorted_tables if t.name not in existing]
    metadata.create_all(bind, tables=missing)
    return InitReport(found=found, created=[t.name for t in missing])


def missing_tables(conn: sa.Connection, tables: tuple[sa.Table, ...]) -> list[str]:
    inspector = sa.inspect(conn)
    return [t.name for t in tables if not inspector.has_table(t.name)]
