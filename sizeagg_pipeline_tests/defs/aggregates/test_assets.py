"""defs/aggregates/assets.py: the aggregate assets, materialized through their period jobs.

Materializing a partition twice rewrites it in place (docs/contract.md, "Writing a
partition"), with the counts in the materialization's metadata; a ranged run
equals its partitions run one by one. The write path underneath is tested in
core/test_aggregation.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.data import slice_rows, three_instances_in_march

DB_AGG = schema.database_size_aggregations
INST_AGG = schema.instance_size_aggregations


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Three instances, three databases each, every day of 2026-03-01..2026-03-20."""
    return three_instances_in_march(engine)


def _run(
    job: str,
    dagster_instance: dg.DagsterInstance,
    *,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(
        instance=dagster_instance, partition_key=partition_key, tags=tags
    )


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
    assert isinstance(metadata["preview"].value, str)
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
