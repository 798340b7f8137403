"""core/existing.py: `sizeagg init-db` on a PostgreSQL database that holds the origin's tables.

`init-db` adds only what is missing and reports what it found: partitioning, the
unique keys sizeagg upserts on, column types; it adds the one missing upsert key of
an early origin table and reports narrow percent columns as a problem, changing
nothing then. `init-db --upgrade` widens them on the origin's first schema (V1),
re-creating the views that read them as they were (docs/postgres.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from sizeagg_pipeline import cli
from sizeagg_pipeline.core import aggregation
from sizeagg_pipeline.core.aggregation import MissingUniqueKey
from sizeagg_pipeline.core.levels import DATABASE
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline_tests.support.data import add_db_rows
from sizeagg_pipeline_tests.support.origin_schema import (
    FEB,
    JAN,
    RAW_MONTHS,
    Catalog,
    build_origin_schema,
    catalog_snapshot,
    column_types,
    views_snapshot,
)
from sizeagg_pipeline_tests.support.origin_schema import disposing_engine as _engine
from sizeagg_pipeline_tests.support.origin_schema import fill_origin as _fill

pytestmark = pytest.mark.postgres


def test_init_db_reports_what_it_found_and_adds_only_the_missing_tables(
    origin: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with origin.connect() as conn:
        before = catalog_snapshot(conn)

    assert cli.main(["init-db"]) == 0
    out = capsys.readouterr().out

    created = [line for line in out.splitlines() if line.startswith("created ")]
    # the origin has no session tables; the others are sizeagg's own
    assert created == [
        "created capacity_alerts",
        "created capacity_forecasts",
        "created capacity_limit_forecasts",
        "created capacity_limits",
        "created raw_horizons",
        "created sizeagg_executions",
        "created sync_sessions",
        "created sync_instance_records",
    ]
    for table in ("instances", "database_size_stats", "instance_size_stats"):
        assert f"found   {table}\n" in out
    assert "partitioned by RANGE (collected_date): 3 partitions, 2025-12..2026-02" in out
    assert (
        "partitioned by RANGE (period_start): 2 partitions, 2026-01..2026-02; "
        "sizeagg makes missing month partitions before it writes"
    ) in out
    # the origin's unique keys, in the origin's column order, are the ones sizeagg upserts on
    assert (
        "upsert key uq_database_size_aggregation (instance_id, database_name, period_type, period_start)"
        in out
    )
    assert "upsert key uq_instance_size_aggregation (instance_id, period_type, period_start)" in out
    assert "upsert key uq_instance_size_stats_instance_date (instance_id, collected_date) WHERE" in out
    assert "total_size_mb is INTEGER (sizeagg creates BIGINT)" in out
    assert "PROBLEM" not in out

    with origin.connect() as conn:
        after = catalog_snapshot(conn)
    new_tables = {
        "sync_sessions",
        "sync_instance_records",
        "capacity_forecasts",
        "raw_horizons",
        "sizeagg_executions",
        "capacity_limit_forecasts",
        "capacity_limits",
        "capacity_alerts",
    }
    assert [r for r in after["columns"] if r[0] not in new_tables] == before["columns"]
    assert [r for r in after["kinds"] if r[0] not in new_tables] == before["kinds"]
    assert {r[0] for r in after["indexes"]} - {r[0] for r in before["indexes"]} == {
        "sync_sessions_pkey",
        "sync_sessions_session_id_key",
        "ix_sync_sessions_status",
        "sync_instance_records_pkey",
        "ix_sync_instance_records_session_id",
        "capacity_forecasts_pkey",
        "uq_capacity_forecasts_database",
        "uq_capacity_forecasts_instance",
        "raw_horizons_pkey",
        "sizeagg_executions_pkey",
        "uq_sizeagg_executions_session_id",
        "ix_sizeagg_executions_session_run_id",
        "capacity_limit_forecasts_pkey",
        "uq_capacity_limit_forecasts_database",
        "uq_capacity_limit_forecasts_instance",
        "capacity_limits_pkey",
        "uq_capacity_limits_database",
        "uq_capacity_limits_instance",
        "capacity_alerts_pkey",
        "capacity_alerts_key_key",
        "ix_capacity_alerts_due",
    }
    assert [r for r in after["indexes"] if r in before["indexes"]] == before["indexes"]

    assert cli.main(["init-db"]) == 0  # a second run finds everything and creates nothing
    assert "\ncreated " not in capsys.readouterr().out


def test_init_db_adds_the_missing_upsert_key_of_an_early_origin_table(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The origin's first DDL had no unique key on database_size_aggregations."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    for engine in _engine(postgresql_url):
        build_origin_schema(engine, RAW_MONTHS, database_aggregation_key=False)
        _fill(engine)
        week = windows_between(Period.WEEKLY, "2026-01-05", "2026-01-05")
        with pytest.raises(MissingUniqueKey, match=r"run `sizeagg init-db` to add it"):
            aggregation.aggregate(engine, DATABASE, week)

        assert cli.main(["init-db"]) == 0
        out = capsys.readouterr().out
        assert (
            "added   unique index uq_database_size_aggregation on database_size_aggregations "
            "(instance_id, database_name, period_type, period_start)"
        ) in out

        result = aggregation.aggregate(engine, DATABASE, week)
        again = aggregation.aggregate(engine, DATABASE, week)
        assert (result.inserted, again.inserted, again.updated, again.deleted) == (6, 0, 6, 0)
        with engine.connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM database_size_aggregations WHERE period_type = 'weekly'")
            ).scalar_one()
        assert count == 6


def test_narrow_percent_columns_are_reported_as_a_problem(
    origin: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The origin's first DDL had numeric(5,2): any change of 1000 % or more overflowed."""
    with origin.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE database_size_aggregations ALTER COLUMN size_change_percent TYPE numeric(5,2)"
        )
    assert cli.main(["init-db"]) == 2
    captured = capsys.readouterr()
    assert (
        "PROBLEM database_size_aggregations.size_change_percent is NUMERIC(5, 2): percentages beyond "
        "±999.99 fail with a numeric overflow; `sizeagg init-db --upgrade` widens it to numeric(10,2)\n"
    ) in captured.out
    assert captured.err == (
        "sizeagg init-db: error: 1 PROBLEM line(s) above, nothing was changed: "
        "run `sizeagg init-db --upgrade` to widen the percent columns\n"
    )


def test_a_default_timestamp_precision_is_no_difference(
    origin: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """TIMESTAMP(6) WITH TIME ZONE is TIMESTAMP WITH TIME ZONE: 6 is PostgreSQL's default."""
    with origin.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE instance_size_aggregations ALTER COLUMN calculated_at TYPE timestamptz(6), "
            "ALTER COLUMN created_at TYPE timestamp(3) with time zone"
        )
    assert cli.main(["init-db"]) == 0
    out = capsys.readouterr().out
    assert "calculated_at" not in out
    assert "created_at is TIMESTAMP(3) WITH TIME ZONE (sizeagg creates TIMESTAMP WITH TIME ZONE)" in out


# --------------------------------------------------------------------------- the origin's first schema (V1)

V1_PERCENTS = ("size_change_percent", "data_size_change_percent", "log_size_change_percent", "growth_rate")
# Two aggregate rows the origin wrote itself, at the edge of numeric(5,2).
ORIGIN_ROWS = """
INSERT INTO database_size_aggregations (instance_id, database_name, period_type, period_start, period_end,
    avg_size_mb, max_size_mb, min_size_mb, data_count, size_change_mb, size_change_percent,
    data_size_change_percent, growth_rate, calculated_at, created_at)
VALUES (1, 'db0', 'monthly', '2026-01-01', '2026-01-31', 120, 130, 110, 31, 5, 999.99, NULL, 999.99,
        '2026-02-01 04:00', '2026-02-01 04:00'),
       (2, 'db1', 'monthly', '2026-02-01', '2026-02-28', 140, 150, 130, 28, -9, -12.34, -999.99, -12.34,
        '2026-03-01 04:00', '2026-03-01 04:00')
"""
# What a site may have built on the origin's view: a view reading it, owned by another
# role, with options, a grant option, a column default and a rule; a trigger on the view.
SITE_OBJECTS = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'capacity_app') THEN CREATE ROLE capacity_app; END IF;
END $$;
GRANT SELECT ON v_database_size_aggregations_recent TO capacity_app;
CREATE VIEW v_capacity_growth WITH (security_barrier) AS
    SELECT instance_name, database_name, period_start, growth_rate FROM v_database_size_aggregations_recent
    WHERE growth_rate > 5 AND database_name NOT LIKE 'tmp%';
ALTER VIEW v_capacity_growth OWNER TO capacity_app;
COMMENT ON VIEW v_capacity_growth IS 'databases growing more than 5 % a period';
GRANT SELECT ON v_capacity_growth TO capacity_reader WITH GRANT OPTION;
ALTER VIEW v_capacity_growth ALTER COLUMN growth_rate SET DEFAULT 0;
CREATE RULE v_capacity_growth_no_insert AS ON INSERT TO v_capacity_growth DO INSTEAD NOTHING;
CREATE FUNCTION forget_aggregate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM database_size_aggregations WHERE id = OLD.id;
    RETURN OLD;
END $$;
CREATE TRIGGER trg_forget_aggregate INSTEAD OF DELETE ON v_database_size_aggregations_recent
    FOR EACH ROW EXECUTE FUNCTION forget_aggregate();
COMMENT ON TRIGGER trg_forget_aggregate ON v_database_size_aggregations_recent IS 'delete through the view';
"""


@pytest.fixture
def origin_v1(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """The origin's first schema (its views, trigger and grants), raw data and two aggregate rows."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    for engine in _engine(postgresql_url):
        build_origin_schema(engine, RAW_MONTHS, aggregate_months=[JAN, FEB], sync_tables=True, v1=True)
        _fill(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(ORIGIN_ROWS)
        yield engine


def _unwidened(catalog: Catalog, tables: set[str]) -> list[sa.Row[Any]]:
    """The columns of `tables`, without those `--upgrade` widens (in tables and views)."""
    return [
        row
        for row in catalog["columns"]
        if row._mapping["column_name"] not in V1_PERCENTS and row._mapping["table_name"] in tables
    ]


def _state(engine: sa.Engine) -> tuple[Catalog, dict[str, dict[str, Any]], Sequence[sa.Row[Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT * FROM database_size_aggregations ORDER BY instance_id, database_name, period_type"
            )
        ).all()
        return catalog_snapshot(conn), views_snapshot(conn), rows


def test_init_db_changes_nothing_when_it_reports_a_problem(
    origin_v1: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """V1: the narrow percent columns are a problem, so the missing key is not added either."""
    before = _state(origin_v1)
    assert cli.main(["init-db"]) == 2
    captured = capsys.readouterr()
    problems = [line for line in captured.out.splitlines() if line.startswith("PROBLEM")]
    assert problems == [
        f"PROBLEM database_size_aggregations.{column} is NUMERIC(5, 2): percentages beyond ±999.99 fail "
        "with a numeric overflow; `sizeagg init-db --upgrade` widens it to numeric(10,2), re-creating "
        "the view(s) public.v_database_size_aggregations_recent"
        for column in V1_PERCENTS
    ]
    assert (
        "rolled back: added   unique index uq_database_size_aggregation on database_size_aggregations "
        "(instance_id, database_name, period_type, period_start)\n"
        + "".join(
            f"rolled back: created {table}\n"
            for table in (
                "capacity_alerts",
                "capacity_forecasts",
                "capacity_limit_forecasts",
                "capacity_limits",
                "raw_horizons",
                "sizeagg_executions",
            )
        )
    ) in captured.out
    assert captured.err == (
        "sizeagg init-db: error: 4 PROBLEM line(s) above, nothing was changed: "
        "run `sizeagg init-db --upgrade` to widen the percent columns\n"
    )
    assert _state(origin_v1) == before


def test_init_db_upgrade_widens_the_percent_columns_and_keeps_every_view_as_it_was(
    origin_v1: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with origin_v1.begin() as conn:
        conn.exec_driver_sql(SITE_OBJECTS, execution_options={"no_parameters": True})
    catalog, views, rows = _state(origin_v1)
    assert views["v_capacity_growth"]["owner"] == "capacity_app"  # the fixture is what it claims
    assert "trg_update_instance_database_last_seen" in str(views["database_size_stats"]["triggers"])

    assert cli.main(["init-db", "--upgrade"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith(("widened", "rebuilt"))] == [
        *(f"widened database_size_aggregations.{c} from NUMERIC(5, 2) to numeric(10,2)" for c in V1_PERCENTS),
        "rebuilt view public.v_database_size_aggregations_recent: dropped and re-created with its "
        "definition, owner, privileges and comments",
        "rebuilt view public.v_capacity_growth: dropped and re-created with its definition, owner, "
        "privileges and comments",
    ]
    assert "added   unique index uq_database_size_aggregation" in out and "PROBLEM" not in out

    after_catalog, after_views, after_rows = _state(origin_v1)
    assert after_views == views
    assert after_rows == rows
    with origin_v1.connect() as conn:
        for relation in ("database_size_aggregations", "database_size_aggregations_2026_02"):
            types = column_types(conn, relation)
            assert {c: types[c] for c in V1_PERCENTS} == dict.fromkeys(V1_PERCENTS, "numeric(10,2)")
        assert column_types(conn, "v_database_size_aggregations_recent")["growth_rate"] == "numeric(10,2)"
        # the re-created views answer, with the columns they had
        growth = conn.execute(sa.text("SELECT * FROM v_capacity_growth"))
        assert list(growth.keys()) == ["instance_name", "database_name", "period_start", "growth_rate"]
    # apart from the widened columns (of the table, its partitions, the views), columns are as they were
    # (the tables init-db creates, sizeagg's own, are not compared)
    existing = {row._mapping["table_name"] for row in catalog["columns"]}
    assert _unwidened(after_catalog, existing) == _unwidened(catalog, existing)

    assert cli.main(["init-db", "--upgrade"]) == 0  # a second run changes nothing
    again = capsys.readouterr().out
    assert not [line for line in again.splitlines() if not line.startswith(("database:", "found", " "))]
    assert _state(origin_v1) == (after_catalog, after_views, after_rows)

    # what the upgrade is for: a database that grows 20-fold in a week
    week = windows_between(Period.WEEKLY, "2026-01-05", "2026-01-05")
    with origin_v1.begin() as conn:
        jump = [{"instance_id": 1, "database_name": "jump", "size_mb": 1, "collected_date": date(2026, 1, 4)}]
        jump += [
            {"instance_id": 1, "database_name": "jump", "size_mb": 20, "collected_date": date(2026, 1, day)}
            for day in range(5, 12)
        ]
        add_db_rows(conn, jump)
    aggregation.aggregate(origin_v1, DATABASE, week)
    with origin_v1.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT size_change_percent, growth_rate FROM database_size_aggregations "
                "WHERE database_name = 'jump' AND period_type = 'weekly'"
            )
        ).one()
    assert stored == (Decimal("1900.00"), Decimal("1900.00"))


def test_init_db_upgrade_leaves_a_materialized_view_to_its_owner(
    origin_v1: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-creating one would recompute its data: it is reported, and nothing changes."""
    with origin_v1.begin() as conn:
        conn.exec_driver_sql(
            "CREATE MATERIALIZED VIEW mv_growth AS "
            "SELECT instance_id, growth_rate FROM database_size_aggregations"
        )
    before = _state(origin_v1)
    assert cli.main(["init-db", "--upgrade"]) == 2
    captured = capsys.readouterr()
    assert (
        "PROBLEM database_size_aggregations.size_change_percent, database_size_aggregations."
        "data_size_change_percent, database_size_aggregations.log_size_change_percent, "
        "database_size_aggregations.growth_rate cannot be widened: materialized view public.mv_growth "
        "reads it: drop it, run this again, then create it again\n"
    ) in captured.out
    assert captured.err == (
        "sizeagg init-db: error: 1 PROBLEM line(s) above, nothing was changed: "
        "fix them, then run `sizeagg init-db` again\n"
    )
    assert _state(origin_v1) == before
