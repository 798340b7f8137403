"""Six months of aggregated history, purged the three ways raw data goes, and the rows to compare.

Shared by the tests of the raw horizon (core/test_horizon.py), of a purged history
re-run through the CLI and a backfill (core/test_aggregation_purged.py) and of the
retention job (core/test_retention.py, defs/retention/test_job.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import QUIET
from sizeagg_pipeline.core import aggregation, schema
from sizeagg_pipeline.core.levels import LEVELS
from sizeagg_pipeline.core.periods import PERIODS, Period, Window, window_containing, windows_between
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.aggregates.jobs import PERIOD_JOBS
from sizeagg_pipeline.defs.sessions.vocabulary import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG
from sizeagg_pipeline_tests.support.data import add_instances, fill_days
from sizeagg_pipeline_tests.support.origin_schema import build_origin_schema, disposing_engine
from sizeagg_pipeline_tests.support.session_rows import run_session_job, session_ids_of

FIRST, LAST = date(2025, 10, 1), date(2026, 3, 31)  # Q4 2025 and Q1 2026, every day
MONTHS = [
    date(2025, 10, 1),
    date(2025, 11, 1),
    date(2025, 12, 1),
    date(2026, 1, 1),
    date(2026, 2, 1),
    date(2026, 3, 1),
]
HORIZON = date(2026, 2, 1)  # the purges below remove every raw row before it: October to January
INSTANCES, DATABASES = 3, 2  # i3 is inactive: still aggregated, no session record
AGGREGATES = (schema.database_size_aggregations, schema.instance_size_aggregations)

# Aggregate row → all its columns; keyed by table, period, window start and group.
Rows = dict[tuple[Any, ...], dict[str, Any]]


COLLECTED = datetime(2026, 4, 1, tzinfo=UTC)  # when the collector wrote the history: before any write


def six_months(engine: sa.Engine) -> list[int]:
    """Instances i1..i3 (i3 inactive), two databases each, every day of FIRST..LAST (at COLLECTED)."""
    with engine.begin() as conn:
        ids = add_instances(conn, INSTANCES, inactive=(3,))
        fill_days(conn, ids, FIRST, LAST, databases=DATABASES)
    collected_at(engine, COLLECTED)
    return ids


def collected_at(engine: sa.Engine, moment: datetime) -> None:
    """Every raw row was collected (and created) at `moment`: long before the writes that follow."""
    with engine.begin() as conn:
        for level in LEVELS:
            conn.execute(sa.update(level.raw).values(collected_at=moment, created_at=moment))


def windows(period: Period, first: date = FIRST, last: date = LAST) -> list[Window]:
    """Every window of `period` with a day in first..last."""
    return windows_between(period, window_containing(period, first).key, window_containing(period, last).key)


def aggregate_everything(engine: sa.Engine, first: date = FIRST, last: date = LAST) -> None:
    """Both levels, all four periods, every window with a day in first..last (what a backfill writes)."""
    for level in LEVELS:
        for period in PERIODS:
            aggregation.aggregate(engine, level, windows(period, first, last))


def backfill(
    instance: dg.DagsterInstance, engine: sa.Engine, backfill_id: str, ranges: dict[Period, tuple[str, str]]
) -> str:
    """A range backfill of each period (first and last partition key), then its session; the session id.

    The runs carry what a UI backfill gives them (`dagster/backfill` and the range
    tags), so the session step judges them as it judges a backfill. (Dagster records
    one materialization per partition of a range: keep the ranges short.)
    """
    for period, (first, last) in ranges.items():
        tags = {BACKFILL_TAG: backfill_id, RANGE_START_TAG: first, RANGE_END_TAG: last}
        result = defs.resolve_job_def(PERIOD_JOBS[period].name).execute_in_process(
            run_config=QUIET, instance=instance, tags=tags, raise_on_error=False
        )
        failures = [e.message for e in result.all_events if e.is_failure]
        assert result.success, f"{period} backfill run failed: {failures}"
    run_session_job(instance, {BACKFILL_TAG: backfill_id})
    (session_id,) = session_ids_of(engine, f"backfill:{backfill_id}")
    return session_id


def aggregate_rows(engine: sa.Engine) -> Rows:
    """Every aggregate row, every column (id, created_at and calculated_at included)."""
    rows: Rows = {}
    with engine.connect() as conn:
        for table in AGGREGATES:
            for row in conn.execute(sa.select(table)).mappings():
                group = (row["instance_id"], row.get("database_name"))
                start = row["period_start"]
                rows[(table.name, row["period_type"], start, *group)] = dict(row)
    return rows


def window_of(key: tuple[Any, ...]) -> Window:
    return window_containing(Period(key[1]), key[2])


def counts(rows: Rows) -> dict[tuple[str, str], int]:
    """Rows per (table, period)."""
    result: dict[tuple[str, str], int] = {}
    for key in rows:
        result[(key[0], key[1])] = result.get((key[0], key[1]), 0) + 1
    return result


def purge_by_delete(engine: sa.Engine, before: date = HORIZON) -> None:
    """`DELETE … WHERE collected_date < before` on both raw tables."""
    with engine.begin() as conn:
        for level in LEVELS:
            conn.execute(sa.delete(level.raw).where(level.raw.c.collected_date < before))


def purge_by_dropping_partitions(engine: sa.Engine, months: list[date]) -> None:
    """The platform's cleanup: `DROP TABLE <raw table>_YYYY_MM` of origin-shaped partitioned tables."""
    with engine.begin() as conn:
        for level in LEVELS:
            for month in months:
                conn.exec_driver_sql(f"DROP TABLE {level.raw.name}_{month:%Y_%m}")


def origin_months(url: str) -> Iterator[sa.Engine]:
    """An engine on origin-shaped tables with raw month partitions for MONTHS (none for the
    aggregates: sizeagg makes them), plus sizeagg's own tables as init-db adds them."""
    for engine in disposing_engine(url):
        build_origin_schema(engine, MONTHS, aggregate_months=[])
        schema.create_missing(engine)
        yield engine


def recorded(engine: sa.Engine) -> Iterator[dict[str, Any]]:
    """The rows of raw_horizons."""
    with engine.connect() as conn:
        yield from (dict(r) for r in conn.execute(sa.select(schema.raw_horizons)).mappings())
