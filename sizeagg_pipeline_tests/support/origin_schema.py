"""The origin platform's PostgreSQL tables, as its own DDL creates them (docs/postgres.md), and
the helpers of the tests that run sizeagg on them.

`build_origin_schema(..., v1=True)` builds the origin's first schema instead (V1_CHANGES).

Shape of the origin's current schema (HEAD baseline + the PK migration): the four
capacity tables range-partitioned by month on `collected_date` / `period_start`,
partitions named `<table>_YYYY_MM`, primary keys `(id, <partition key>)`, origin
column types (`serial` ids, `instance_size_stats.total_size_mb int4`), origin index
and constraint names, and the origin's column ORDER in the unique keys (sizeagg's own
tables lead with `(period_type, period_start)`). `sync_sessions` /
`sync_instance_records` carry the origin's CHECK constraints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Any, TypedDict

import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline_tests.support.data import add_instances, fill_days

DEC, JAN, FEB = date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)
RAW_MONTHS = [DEC, JAN, FEB]

INSTANCES = """
CREATE TABLE instances (
    id serial PRIMARY KEY,
    name varchar(255) NOT NULL CONSTRAINT instances_name_key UNIQUE,
    db_type varchar(50) NOT NULL,
    host varchar(255) NOT NULL,
    port int4 NOT NULL,
    database_name varchar(255),
    database_version varchar(1000),
    main_version varchar(20),
    detailed_version varchar(50),
    sync_count int4 NOT NULL DEFAULT 0,
    credential_id int4,
    description text,
    is_active bool NOT NULL DEFAULT true,
    last_connected timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    deleted_at timestamptz
);
CREATE UNIQUE INDEX ix_instances_name ON instances (name);
CREATE INDEX ix_instances_db_type ON instances (db_type);
"""

RAW = """
CREATE TABLE database_size_stats (
    id bigserial NOT NULL,
    instance_id int4 NOT NULL REFERENCES instances (id),
    database_name varchar(255) NOT NULL,
    size_mb int8 NOT NULL,
    data_size_mb int8,
    log_size_mb int8,
    collected_date date NOT NULL,
    collected_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT database_size_stats_pkey PRIMARY KEY (id, collected_date),
    CONSTRAINT uq_daily_database_size UNIQUE (instance_id, database_name, collected_date)
) PARTITION BY RANGE (collected_date);
CREATE INDEX ix_database_size_stats_instance_db ON database_size_stats (instance_id, database_name);
CREATE INDEX ix_database_size_stats_collected_date ON database_size_stats (collected_date);
CREATE INDEX ix_database_size_stats_instance_date ON database_size_stats (instance_id, collected_date);

CREATE TABLE instance_size_stats (
    id serial NOT NULL,
    instance_id int4 NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    total_size_mb int4 NOT NULL DEFAULT 0,
    database_count int4 NOT NULL DEFAULT 0,
    collected_date date NOT NULL,
    collected_at timestamptz NOT NULL DEFAULT now(),
    is_deleted bool NOT NULL DEFAULT false,
    deleted_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    CONSTRAINT instance_size_stats_pkey PRIMARY KEY (id, collected_date)
) PARTITION BY RANGE (collected_date);
CREATE INDEX ix_instance_size_stats_instance_id ON instance_size_stats (instance_id);
CREATE INDEX ix_instance_size_stats_collected_date ON instance_size_stats (collected_date);
CREATE INDEX ix_instance_size_stats_instance_date ON instance_size_stats (instance_id, collected_date);
CREATE INDEX ix_instance_size_stats_deleted ON instance_size_stats (is_deleted);
CREATE INDEX ix_instance_size_stats_total_size ON instance_size_stats (total_size_mb);
CREATE UNIQUE INDEX uq_instance_size_stats_instance_date
    ON instance_size_stats (instance_id, collected_date) WHERE is_deleted = false;
"""

AGGREGATES = """
CREATE TABLE database_size_aggregations (
    id bigserial NOT NULL,
    instance_id int4 NOT NULL,
    database_name varchar(255) NOT NULL,
    period_type varchar(20) NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    avg_size_mb int8 NOT NULL,
    max_size_mb int8 NOT NULL,
    min_size_mb int8 NOT NULL,
    data_count int4 NOT NULL,
    avg_data_size_mb int8,
    max_data_size_mb int8,
    min_data_size_mb int8,
    avg_log_size_mb int8,
    max_log_size_mb int8,
    min_log_size_mb int8,
    size_change_mb int8 NOT NULL DEFAULT 0,
    size_change_percent numeric(10,2) NOT NULL DEFAULT 0,
    data_size_change_mb int8,
    data_size_change_percent numeric(10,2),
    log_size_change_mb int8,
    log_size_change_percent numeric(10,2),
    growth_rate numeric(10,2) NOT NULL DEFAULT 0,
    calculated_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT database_size_aggregations_pkey PRIMARY KEY (id, period_start){db_key}
) PARTITION BY RANGE (period_start);
CREATE INDEX ix_database_size_aggregations_instance_period
    ON database_size_aggregations (instance_id, period_type, period_start);
CREATE INDEX ix_database_size_aggregations_period_type
    ON database_size_aggregations (period_type, period_start);
CREATE INDEX ix_database_size_aggregations_id ON database_size_aggregations (id);

CREATE TABLE instance_size_aggregations (
    id bigserial NOT NULL,
    instance_id int4 NOT NULL REFERENCES instances (id),
    period_type varchar(20) NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    total_size_mb int8 NOT NULL,
    avg_size_mb int8 NOT NULL,
    max_size_mb int8 NOT NULL,
    min_size_mb int8 NOT NULL,
    data_count int4 NOT NULL,
    database_count int4 NOT NULL,
    avg_database_count numeric(10,2),
    max_database_count int4,
    min_database_count int4,
    total_size_change_mb int8,
    total_size_change_percent numeric(10,2),
    database_count_change int4,
    database_count_change_percent numeric(10,2),
    growth_rate numeric(10,2),
    trend_direction varchar(20),
    calculated_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT instance_size_aggregations_pkey PRIMARY KEY (id, period_start),
    CONSTRAINT uq_instance_size_aggregation UNIQUE (instance_id, period_type, period_start)
) PARTITION BY RANGE (period_start);
CREATE INDEX ix_instance_size_aggregations_instance_period
    ON instance_size_aggregations (instance_id, period_type, period_start);
CREATE INDEX ix_instance_size_aggregations_period_type
    ON instance_size_aggregations (period_type, period_start);
"""
# HEAD's key; the origin's first DDL (V1) had none (docs/postgres.md).
DATABASE_AGGREGATION_KEY = """,
    CONSTRAINT uq_database_size_aggregation
        UNIQUE (instance_id, database_name, period_type, period_start)"""

SYNC = """
CREATE TABLE sync_sessions (
    id serial PRIMARY KEY,
    session_id varchar(36) NOT NULL UNIQUE,
    sync_type varchar(20) NOT NULL
        CHECK (sync_type IN ('manual_single', 'manual_batch', 'manual_task', 'scheduled_task')),
    sync_category varchar(20) NOT NULL DEFAULT 'account'
        CHECK (sync_category IN ('account', 'capacity', 'config', 'aggregation', 'other')),
    status varchar(20) NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    total_instances int4 DEFAULT 0,
    successful_instances int4 DEFAULT 0,
    failed_instances int4 DEFAULT 0,
    created_by int4,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
CREATE INDEX ix_sync_sessions_status ON sync_sessions (status);
CREATE TABLE sync_instance_records (
    id serial PRIMARY KEY,
    session_id varchar(36) NOT NULL REFERENCES sync_sessions (session_id) ON DELETE CASCADE,
    instance_id int4 NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    instance_name varchar(255),
    sync_category varchar(20) NOT NULL DEFAULT 'account'
        CHECK (sync_category IN ('account', 'capacity', 'config', 'aggregation', 'other')),
    status varchar(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    started_at timestamptz,
    completed_at timestamptz,
    items_synced int4 DEFAULT 0,
    items_created int4 DEFAULT 0,
    items_updated int4 DEFAULT 0,
    items_deleted int4 DEFAULT 0,
    error_message text,
    sync_details jsonb,
    created_at timestamptz DEFAULT now()
);
"""

# The origin's first schema (V1, docs/postgres.md): HEAD's tables minus what later migrations
# added, plus what they removed. Applied to HEAD's DDL built without the aggregate key.
V1_CHANGES = """
ALTER TABLE instances ADD COLUMN environment varchar(20) NOT NULL DEFAULT 'production',
    ADD COLUMN status varchar(20) DEFAULT 'active';
CREATE INDEX ix_instances_status ON instances (status);
ALTER TABLE database_size_stats DROP CONSTRAINT database_size_stats_pkey,
    DROP CONSTRAINT uq_daily_database_size,
    ADD COLUMN is_deleted bool DEFAULT false, ADD COLUMN deleted_at timestamptz;
CREATE INDEX ix_database_size_stats_deleted ON database_size_stats (is_deleted);
ALTER TABLE database_size_aggregations DROP CONSTRAINT database_size_aggregations_pkey,
    ALTER COLUMN size_change_percent TYPE numeric(5,2),
    ALTER COLUMN data_size_change_percent TYPE numeric(5,2),
    ALTER COLUMN log_size_change_percent TYPE numeric(5,2),
    ALTER COLUMN growth_rate TYPE numeric(5,2),
    ALTER COLUMN calculated_at TYPE timestamp, ALTER COLUMN created_at TYPE timestamp;
ALTER TABLE instance_size_aggregations DROP CONSTRAINT instance_size_aggregations_pkey,
    ALTER COLUMN calculated_at TYPE timestamp, ALTER COLUMN created_at TYPE timestamp;
CREATE INDEX ix_instance_size_aggregations_id ON instance_size_aggregations (id);

CREATE TABLE instance_databases (
    id serial PRIMARY KEY,
    instance_id int4 NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    database_name varchar(255) NOT NULL,
    is_active bool NOT NULL DEFAULT true,
    first_seen_date date NOT NULL DEFAULT CURRENT_DATE,
    last_seen_date date NOT NULL DEFAULT CURRENT_DATE,
    deleted_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    UNIQUE (instance_id, database_name)
);
-- The collector's inventory: every raw row marks its database as seen that day.
CREATE FUNCTION update_instance_database_last_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE instance_databases SET last_seen_date = NEW.collected_date, updated_at = now(),
        is_active = true, deleted_at = NULL
    WHERE instance_id = NEW.instance_id AND database_name = NEW.database_name;
    RETURN NEW;
END $$;
CREATE TRIGGER trg_update_instance_database_last_seen AFTER INSERT ON database_size_stats
    FOR EACH ROW EXECUTE FUNCTION update_instance_database_last_seen();

CREATE VIEW v_database_size_recent AS
SELECT dss.*, i.name AS instance_name, i.db_type, i.host, i.port
FROM database_size_stats dss JOIN instances i ON dss.instance_id = i.id
WHERE dss.collected_date >= CURRENT_DATE - INTERVAL '30 days'
ORDER BY dss.collected_date DESC, dss.instance_id, dss.database_name;

CREATE VIEW v_database_size_aggregations_recent AS
SELECT dsa.*, i.name AS instance_name, i.db_type, i.host, i.port
FROM database_size_aggregations dsa JOIN instances i ON dsa.instance_id = i.id
WHERE dsa.period_start >= CURRENT_DATE - INTERVAL '12 months'
ORDER BY dsa.period_start DESC, dsa.instance_id, dsa.database_name;
COMMENT ON VIEW v_database_size_aggregations_recent IS 'DB-level aggregates, last 12 months (100% = x2)';
COMMENT ON COLUMN v_database_size_aggregations_recent.growth_rate IS 'period-over-period growth, %';
"""
# Who reads the reports: a role the views are granted to (roles are per server, not per database).
V1_READER = "capacity_reader"
V1_GRANTS = f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{V1_READER}') THEN CREATE ROLE {V1_READER}; END IF;
END $$;
GRANT SELECT ON v_database_size_recent, v_database_size_aggregations_recent TO {V1_READER};
GRANT SELECT (instance_name, growth_rate) ON v_database_size_aggregations_recent TO PUBLIC;
"""


PARTITIONED = (
    "database_size_stats",
    "instance_size_stats",
    "database_size_aggregations",
    "instance_size_aggregations",
)


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def create_month_partition(conn: sa.Connection, table: str, month: date) -> str:
    """The origin's month partition `<table>_YYYY_MM`, bounds [1st, 1st of next month)."""
    name = f"{table}_{month:%Y_%m}"
    conn.exec_driver_sql(
        f"CREATE TABLE {name} PARTITION OF {table} "
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
    )
    return name


def build_origin_schema(
    engine: sa.Engine,
    months: Iterable[date],
    *,
    sync_tables: bool = False,
    database_aggregation_key: bool = True,
    aggregate_months: Iterable[date] | None = None,
    v1: bool = False,
) -> None:
    """Create the origin's tables and month partitions (raw: `months`; aggregates:
    `aggregate_months`, default the same); with `v1`, as its first schema created them
    (no aggregate key, numeric(5,2) percents, its views, trigger and grants)."""
    months = list(months)
    aggregate_months = months if aggregate_months is None else list(aggregate_months)
    ddl = (
        INSTANCES
        + RAW
        + AGGREGATES.format(db_key=DATABASE_AGGREGATION_KEY if database_aggregation_key and not v1 else "")
    )
    if sync_tables:
        ddl += SYNC
    if v1:
        ddl += V1_CHANGES + V1_GRANTS
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl, execution_options={"no_parameters": True})  # a % is literal
        for table in PARTITIONED:
            for month in aggregate_months if table.endswith("aggregations") else months:
                create_month_partition(conn, table, month)


class Catalog(TypedDict):
    columns: Sequence[sa.Row[Any]]
    indexes: Sequence[sa.Row[Any]]
    kinds: Sequence[sa.Row[Any]]


def catalog_snapshot(conn: sa.Connection) -> Catalog:
    """What init-db must not change: column types, index definitions, partition layout."""
    columns = conn.execute(
        sa.text(
            "SELECT table_name, column_name, data_type, numeric_precision, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        )
    ).all()
    indexes = conn.execute(
        sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname")
    ).all()
    kinds = conn.execute(
        sa.text(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        )
    ).all()
    return {"columns": columns, "indexes": indexes, "kinds": kinds}


def views_snapshot(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """What `init-db --upgrade` must keep of every view: definition, options, owner, ACL,
    comments, column privileges, triggers and rules (and, with them, every table trigger)."""
    views = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_viewdef(c.oid), c.reloptions, pg_get_userbyid(c.relowner), "
            "c.relacl::text, obj_description(c.oid, 'pg_class'), "
            "ARRAY(SELECT a.attname || ':' || coalesce(col_description(c.oid, a.attnum), '-') || ':' "
            "      || coalesce(a.attacl::text, '-') FROM pg_attribute a "
            "      WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum), "
            "ARRAY(SELECT pg_get_ruledef(r.oid) FROM pg_rewrite r "
            "      WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN' ORDER BY r.rulename) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') ORDER BY c.relname"
        )
    ).all()
    triggers = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_triggerdef(t.oid), obj_description(t.oid, 'pg_trigger') "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal ORDER BY c.relname, t.tgname"
        )
    ).all()
    snapshot: dict[str, dict[str, Any]] = {
        name: {
            "definition": definition,
            "options": options,
            "owner": owner,
            "acl": acl,
            "comment": comment,
            "columns": columns,
            "rules": rules,
            "triggers": [],
        }
        for name, definition, options, owner, acl, comment, columns, rules in views
    }
    for relation, trigger, comment in triggers:
        snapshot.setdefault(relation, {"triggers": []})["triggers"].append((trigger, comment))
    return snapshot


def _pairs(conn: sa.Connection, query: str, relation: str) -> dict[str, str]:
    """The two columns of a catalog query about one relation (`:r`), as a dict."""
    return {key: value for key, value in conn.execute(sa.text(query), {"r": relation})}


def column_types(conn: sa.Connection, relation: str) -> dict[str, str]:
    """Column → its type as PostgreSQL writes it (`numeric(5,2)`), of a table or view."""
    return _pairs(
        conn,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(:r) AND attnum > 0 AND NOT attisdropped",
        relation,
    )


# --------------------------------------------------------------------------- sizeagg on origin tables


def disposing_engine(url: str) -> Iterator[sa.Engine]:
    """An engine on `url` for the body of `for engine in disposing_engine(url)`; disposed after it."""
    engine = schema.make_engine(url)
    yield engine
    engine.dispose()


def fill_origin(engine: sa.Engine) -> list[int]:
    """Instances i1..i3 (i3 inactive), two databases each, every day of 2025-12-01..2026-02-28."""
    with engine.begin() as conn:
        ids = add_instances(conn, 3, inactive=(3,))
        fill_days(conn, ids, DEC, date(2026, 2, 28), databases=2)
    return ids


def partitions_of(conn: sa.Connection, table: str) -> dict[str, str]:
    """The partitions of `table`: name → bound expression."""
    return _pairs(
        conn,
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:r)",
        table,
    )
