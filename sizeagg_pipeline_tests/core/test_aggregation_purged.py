"""The issue's scenario: aggregate six months, purge the oldest raw months, re-run old dates.

Raw data goes the way a platform database loses it: `DELETE … WHERE collected_date <
2026-02-01` on both backends, and on PostgreSQL the platform's cleanup dropping the
`<table>_YYYY_MM` month partitions of origin-shaped tables. Then `sizeagg run` for an
old date and for a date inside the purged months, and a range backfill of all four
periods over the whole history, each with its session. Every slice whose window or
previous window reaches into the purged months is byte-identical afterwards,
calculated_at included; every other slice is rewritten with the same values; no row
is lost; every session is completed and names the kept windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import run_tick
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.history import (
    HORIZON,
    MONTHS,
    aggregate_everything,
    aggregate_rows,
    backfill,
    counts,
    origin_months,
    purge_by_delete,
    purge_by_dropping_partitions,
    six_months,
    window_of,
)
from sizeagg_pipeline_tests.support.session_rows import assert_ended, records_by_instance

ACTIVE = 2  # i1, i2 (i3 is inactive)
GONE = "raw data before 2026-02-01 is gone"
# Rows per (table, period) of six months, 3 instances × 2 databases: 182 days, 27 ISO
# weeks (09-29..03-30), 6 months, 2 quarters.
ROWS = {
    (table, period): n * per
    for table, per in (("database_size_aggregations", 6), ("instance_size_aggregations", 3))
    for period, n in (("daily", 182), ("weekly", 27), ("monthly", 6), ("quarterly", 2))
}
# The backfill after the purge: from inside the purged months to after the horizon.
RANGES = {
    Period.DAILY: ("2026-01-25", "2026-02-07"),
    Period.WEEKLY: ("2025-12-29", "2026-03-02"),
    Period.MONTHLY: ("2025-10-01", "2026-03-01"),
    Period.QUARTERLY: ("2025-10-01", "2026-01-01"),
}


def _scenario(engine: sa.Engine, instance: dg.DagsterInstance, purge: Callable[[sa.Engine], None]) -> None:
    six_months(engine)
    aggregate_everything(engine)
    before = aggregate_rows(engine)
    assert counts(before) == ROWS

    purge(engine)
    old_date = run_tick(defs, instance, date(2026, 2, 1))  # every window of it reaches into January
    backfilled = backfill(instance, engine, "after-purge", RANGES)

    after = aggregate_rows(engine)
    assert counts(after) == ROWS  # not one row deleted
    kept = [k for k in before if window_of(k).previous().start < HORIZON]
    rerun = {(p.value, w.start) for p, keys in RANGES.items() for w in windows_between(p, *keys)}
    written = [k for k in before if k not in kept and (k[1], k[2]) in rerun]
    assert len(written) == (6 + 4 + 1) * (6 + 3)  # days 02-02..02-07, weeks 02-09..03-02, March
    # 124 days (10-01..02-01), 19 weeks (09-29..02-02), 5 months, 2 quarters; 6 + 3 rows each
    assert len(kept) == (124 + 19 + 5 + 2) * (6 + 3)
    for key in kept:
        assert after[key] == before[key], key  # byte-identical: every column, calculated_at and id
    for key in written:
        assert after[key]["calculated_at"] > before[key]["calculated_at"], key
        assert {**after[key], "calculated_at": None} == {**before[key], "calculated_at": None}, key

    assert old_date.status == "completed", old_date
    assert_ended(engine, backfilled, "completed", total=ACTIVE)
    records = records_by_instance(engine, old_date.session_id)
    assert records[1]["sync_details"]["kept"] == [
        f"kept 6 rows of daily 2026-02-01 in database_size_aggregations: {GONE}",
        f"kept 6 rows of weekly 2026-01-26 in database_size_aggregations: {GONE}",
        f"kept 6 rows of monthly 2026-02-01 in database_size_aggregations: {GONE}",
        f"kept 6 rows of quarterly 2026-01-01 in database_size_aggregations: {GONE}",
        f"kept 3 rows of daily 2026-02-01 in instance_size_aggregations: {GONE}",
        f"kept 3 rows of weekly 2026-01-26 in instance_size_aggregations: {GONE}",
        f"kept 3 rows of monthly 2026-02-01 in instance_size_aggregations: {GONE}",
        f"kept 3 rows of quarterly 2026-01-01 in instance_size_aggregations: {GONE}",
    ]
    assert records[1]["items_synced"] == 4 * (2 + 1)  # the instance's rows in the execution's slices
    range_records = records_by_instance(engine, backfilled)
    kept_text = [
        f"{rows} rows of {period} {partitions} in {table}"
        for table, per in (("database_size_aggregations", 6), ("instance_size_aggregations", 3))
        for rows, period, partitions in (
            (8 * per, "daily", "2026-01-25...2026-02-01 (8 partitions)"),
            (6 * per, "weekly", "2025-12-29...2026-02-02 (6 partitions)"),
            (5 * per, "monthly", "2025-10-01...2026-02-01 (5 partitions)"),
            (2 * per, "quarterly", "2025-10-01...2026-01-01 (2 partitions)"),
        )
    ]
    range_records = records_by_instance(engine, backfilled)
    assert range_records[2]["sync_details"]["kept"] == [f"kept {text}: {GONE}" for text in kept_text]


def test_a_purge_by_delete_keeps_every_slice_it_reaches(
    engine: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    _scenario(engine, dagster_instance, purge_by_delete)


@pytest.fixture
def origin_history(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """Origin-shaped tables: raw month partitions October..March; init-db adds sizeagg's own tables."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    yield from origin_months(postgresql_url)


@pytest.mark.postgres
def test_the_platform_dropping_raw_month_partitions_keeps_every_slice_it_reaches(
    origin_history: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    _scenario(origin_history, dagster_instance, lambda e: purge_by_dropping_partitions(e, MONTHS[:4]))
