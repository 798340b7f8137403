"""Contract §3.4: idempotent, atomic partition writes, through the assets and the core."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline import defs
from sizeagg_pipeline.core import aggregation, schema
from sizeagg_pipeline.core.periods import Period, window_for_key, windows_between

from .conftest import add_instances, fill_days, slice_rows

DB_AGG = schema.database_size_aggregations
INST_AGG = schema.instance_size_aggregations
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 20)


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        ids = add_instances(conn, 3)
        fill_days(conn, ids, FIRST, LAST, databases=3)
    return engine


def _run(job: str, dagster_instance: dg.DagsterInstance, **kwargs: object) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(instance=dagster_instance, **kwargs)


def _timestamps(conn: sa.Connection, table: sa.Table, period: str, start: date) -> list[tuple]:
    rows = conn.execute(
        sa.select(table.c.id, table.c.calculated_at, table.c.created_at)
        .where(table.c.period_type == period, table.c.period_start == start)
        .order_by(table.c.id)
    )
    return [tuple(r) for r in rows]


def test_materializing_twice_changes_only_calculated_at(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    day = date(2026, 3, 10)
    first = _run("daily_aggregation_job", dagster_instance, partition_key=day.isoformat())
    assert first.success
    with data.connect() as conn:
        rows_1 = [slice_rows(conn, t, "daily", day) for t in (DB_AGG, INST_AGG)]
        stamps_1 = _timestamps(conn, DB_AGG, "daily", day)
    assert len(rows_1[0]) == 9 and len(rows_1[1]) == 3
    second = _run("daily_aggregation_job", dagster_instance, partition_key=day.isoformat())
    assert second.success
    with data.connect() as conn:
        rows_2 = [slice_rows(conn, t, "daily", day) for t in (DB_AGG, INST_AGG)]
        stamps_2 = _timestamps(conn, DB_AGG, "daily", day)
    assert rows_2 == rows_1
    assert [s[0] for s in stamps_2] == [s[0] for s in stamps_1]  # same rows, not re-inserted
    assert [s[2] for s in stamps_2] == [s[2] for s in stamps_1]  # created_at kept
    assert all(b[1] > a[1] for a, b in zip(stamps_1, stamps_2, strict=True))  # calculated_at refreshed
    metadata = second.asset_materializations_for_node("database_size_daily")[0].metadata
    assert metadata["rows_updated"].value == 9
    assert metadata["rows_inserted"].value == 0
    assert metadata["dagster/row_count"].value == 9
    assert "db0" in metadata["preview"].value


def test_range_run_equals_partitions_one_by_one(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    tags = {
        "dagster/asset_partition_range_start": "2026-03-02",
        "dagster/asset_partition_range_end": "2026-03-16",
    }
    result = _run("weekly_aggregation_job", dagster_instance, tags=tags)
    assert result.success
    assert len(result.asset_materializations_for_node("database_size_weekly")) == 3
    weeks = [date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)]
    with data.connect() as conn:
        ranged = {w: [slice_rows(conn, t, "weekly", w) for t in (DB_AGG, INST_AGG)] for w in weeks}
    with data.begin() as conn:
        conn.execute(sa.delete(DB_AGG))
        conn.execute(sa.delete(INST_AGG))
    for week in weeks:
        assert _run("weekly_aggregation_job", dagster_instance, partition_key=week.isoformat()).success
    with data.connect() as conn:
        single = {w: [slice_rows(conn, t, "weekly", w) for t in (DB_AGG, INST_AGG)] for w in weeks}
    assert single == ranged
    assert all(len(ranged[w][0]) == 9 for w in weeks)
    # Instance totals grow 3 MB a day. The week of 03-02 (days 1..7 after 03-01) compares
    # with 02-23..03-01, which holds only 03-01 (day 0): +4 days × 3 MB = 12. Full weeks: 21.
    assert ranged[weeks[0]][1][0]["total_size_change_mb"] == 12
    assert ranged[weeks[1]][1][0]["total_size_change_mb"] == 21


def test_row_whose_raw_data_was_deleted_disappears(data: sa.Engine) -> None:
    window = window_for_key(Period.MONTHLY, "2026-03-01")
    aggregation.aggregate(data, aggregation.DATABASE, [window])
    with data.begin() as conn:
        conn.execute(
            sa.delete(schema.database_size_stats).where(
                schema.database_size_stats.c.database_name == "db2",
                schema.database_size_stats.c.instance_id == 1,
            )
        )
    result = aggregation.aggregate(data, aggregation.DATABASE, [window])
    assert (result.inserted, result.updated, result.deleted) == (0, 8, 1)
    with data.connect() as conn:
        names = {
            (r["instance_id"], r["database_name"]) for r in slice_rows(conn, DB_AGG, "monthly", window.start)
        }
    assert (1, "db2") not in names and len(names) == 8


def _install_failing_trigger(conn: sa.Connection) -> None:
    """A real failure in the middle of the upsert: the row of database 'boom' aborts it."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
            "IF NEW.database_name = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON database_size_aggregations "
            "FOR EACH ROW EXECUTE FUNCTION boom()"
        )
    else:
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON database_size_aggregations "
            "WHEN NEW.database_name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )


def test_failure_mid_write_leaves_previous_slice_intact(data: sa.Engine) -> None:
    days = windows_between(Period.DAILY, "2026-03-05", "2026-03-06")
    aggregation.aggregate(data, aggregation.DATABASE, days)
    with data.connect() as conn:
        before = [slice_rows(conn, DB_AGG, "daily", w.start) for w in days]
    with data.begin() as conn:
        # new raw values everywhere, a vanished database, and the row that fails
        conn.execute(
            sa.update(schema.database_size_stats).values(size_mb=schema.database_size_stats.c.size_mb * 2)
        )
        conn.execute(
            sa.delete(schema.database_size_stats).where(schema.database_size_stats.c.database_name == "db1")
        )
        conn.execute(
            schema.database_size_stats.insert(),
            [{"instance_id": 3, "database_name": "boom", "size_mb": 1, "collected_date": date(2026, 3, 6)}],
        )
        _install_failing_trigger(conn)
    with pytest.raises(sa.exc.DBAPIError, match="boom"):
        aggregation.aggregate(data, aggregation.DATABASE, days)
    with data.connect() as conn:
        after = [slice_rows(conn, DB_AGG, "daily", w.start) for w in days]
        leftovers = sa.inspect(conn).get_temp_table_names() if conn.dialect.name == "sqlite" else []
    assert after == before
    assert "sizeagg_groups" not in leftovers


def test_other_level_and_partitions_unaffected_by_a_failed_partition(data: sa.Engine) -> None:
    good = window_for_key(Period.DAILY, "2026-03-03")
    aggregation.aggregate(data, aggregation.DATABASE, [good])
    bad = window_for_key(Period.DAILY, "2026-03-12")
    with data.begin() as conn:
        conn.execute(
            sa.update(schema.database_size_stats)
            .where(schema.database_size_stats.c.collected_date == bad.start)
            .values(size_mb=-1)
        )
    with pytest.raises(aggregation.InvalidRawData):
        aggregation.aggregate(data, aggregation.DATABASE, [bad])
    instance_result = aggregation.aggregate(data, aggregation.INSTANCE, [bad])
    assert instance_result.inserted == 3
    with data.connect() as conn:
        assert len(slice_rows(conn, DB_AGG, "daily", good.start)) == 9
        assert slice_rows(conn, DB_AGG, "daily", bad.start) == []


def test_open_period_is_aggregated_to_date(data: sa.Engine) -> None:
    # March 2026 has raw rows up to the 20th: the month is aggregated over what exists.
    result = aggregation.aggregate(data, aggregation.INSTANCE, [window_for_key(Period.MONTHLY, "2026-03-01")])
    assert result.rows == 3
    with data.connect() as conn:
        row = slice_rows(conn, INST_AGG, "monthly", date(2026, 3, 1))[0]
    assert (row["data_count"], row["period_end"]) == ((LAST - FIRST).days + 1, date(2026, 3, 31))
    assert row["total_size_change_mb"] == 0 and row["trend_direction"] == "stable"  # February is empty
    assert FIRST + timedelta(days=19) == LAST
