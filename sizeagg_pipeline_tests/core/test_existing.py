"""core/existing.py: `sizeagg init-db` on a PostgreSQL database that holds the origin's tables.

`init-db` adds only what is missing and reports what it found: partitioning, the
unique keys sizeagg upserts on, column types; it adds the one missing upsert key of
an early origin table and reports narrow percent columns as a problem
(docs/postgres.md).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sizeagg_pipeline import cli
from sizeagg_pipeline.core import aggregation
from sizeagg_pipeline.core.aggregation import MissingUniqueKey
from sizeagg_pipeline.core.levels import DATABASE
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline_tests.support.origin_schema import RAW_MONTHS, build_origin_schema, catalog_snapshot
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
    # the origin has no session tables; the forecasts, limits and alerts tables are sizeagg's own
    assert created == [
        "created capacity_alerts",
        "created capacity_forecasts",
        "created capacity_limit_forecasts",
        "created capacity_limits",
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
    assert cli.main(["init-db"]) == 1
    out = capsys.readouterr().out
    assert (
        "PROBLEM database_size_aggregations.size_change_percent is NUMERIC(5, 2): percentages beyond "
        "±999.99 fail with a numeric overflow; widen it with ALTER TABLE database_size_aggregations "
        "ALTER COLUMN size_change_percent TYPE numeric(10,2)"
    ) in out
