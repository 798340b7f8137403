"""core/horizon.py and the write that keeps what it cannot recompute (core/aggregation.py).

A write never rewrites a window from less history: a window whose raw data, or whose
previous window's, is gone is kept exactly as it was (every column, calculated_at
too). What is "gone" is told from what sizeagg saw before, so a first history and a
collector that was down are aggregated as always. The same history re-run through
`sizeagg run` and a backfill, with sessions, is in test_aggregation_purged.py.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, schema
from sizeagg_pipeline.core.horizon import EVERYTHING, read_horizon
from sizeagg_pipeline.core.levels import DATABASE, INSTANCE, LEVELS
from sizeagg_pipeline.core.periods import PERIODS, Period, window_for_key, windows_between
from sizeagg_pipeline_tests.support.data import add_instances, fill_days, slice_rows
from sizeagg_pipeline_tests.support.history import (
    HORIZON,
    aggregate_everything,
    aggregate_rows,
    purge_by_delete,
    recorded,
    six_months,
    window_of,
)

DB_AGG = schema.database_size_aggregations
INST_AGG = schema.instance_size_aggregations


@pytest.fixture
def history(engine: sa.Engine) -> sa.Engine:
    """Six months (2025-10-01..2026-03-31) of raw data, every window of both levels aggregated."""
    six_months(engine)
    aggregate_everything(engine)
    return engine


def _write(engine: sa.Engine, period: Period, first: str, last: str | None = None) -> list:
    """Both levels' writes of the windows first..last: their results."""
    return [
        aggregation.aggregate(engine, level, windows_between(period, first, last or first))
        for level in LEVELS
    ]


# --------------------------------------------------------------------------- kept


def test_a_partly_purged_quarter_and_a_month_after_a_purged_month_are_kept(history: sa.Engine) -> None:
    before = aggregate_rows(history)
    purge_by_delete(history)  # October .. January

    quarter = _write(history, Period.QUARTERLY, "2026-01-01")  # January gone: partly purged
    february = _write(history, Period.MONTHLY, "2026-02-01")  # complete, but its previous month is gone
    weeks = _write(history, Period.WEEKLY, "2026-01-26", "2026-02-09")  # straddles; after; after that
    days = _write(history, Period.DAILY, "2026-02-01", "2026-02-02")

    gone = "raw data before 2026-02-01 is gone"
    assert [str(r.kept) for r in quarter] == [
        f"kept 6 rows of quarterly 2026-01-01 in database_size_aggregations: {gone}",
        f"kept 3 rows of quarterly 2026-01-01 in instance_size_aggregations: {gone}",
    ]
    assert [(r.rows, r.deleted, r.read_from) for r in quarter + february] == [(0, 0, None)] * 4
    assert [r.kept.partitions if r.kept else None for r in february] == ["2026-02-01"] * 2
    # Week 01-26..02-01 reaches into January, week 02-02 compares with it: both kept; 02-09 written.
    assert [(r.kept.partitions, r.kept.windows) if r.kept else None for r in weeks] == [
        ("2026-01-26...2026-02-02", 2)
    ] * 2
    assert [(r.rows, r.read_from) for r in weeks] == [(6, date(2026, 2, 2)), (3, date(2026, 2, 2))]
    assert [(r.kept.partitions if r.kept else None, r.rows) for r in days] == [
        ("2026-02-01", 6),
        ("2026-02-01", 3),
    ]

    after = aggregate_rows(history)
    assert after.keys() == before.keys()  # nothing deleted
    for key, row in before.items():
        if window_of(key).previous().start < HORIZON:
            assert after[key] == row, key  # byte-identical, calculated_at and id included
    written = {("weekly", date(2026, 2, 9)), ("daily", date(2026, 2, 2))}
    rewritten = [k for k in before if (k[1], k[2]) in written]
    assert len(rewritten) == 2 * (6 + 3)
    for key in rewritten:
        old, new = before[key], after[key]
        assert new["calculated_at"] > old["calculated_at"]
        assert {**new, "calculated_at": None} == {**old, "calculated_at": None}  # the same values


def test_a_window_with_no_raw_data_left_keeps_its_rows(history: sa.Engine) -> None:
    before = aggregate_rows(history)
    purge_by_delete(history)
    with history.begin() as conn:
        conn.execute(sa.delete(INSTANCE.raw))  # every instance row gone, database rows from February on
    november = _write(history, Period.MONTHLY, "2025-11-01")
    march = _write(history, Period.MONTHLY, "2026-03-01")
    none_left = "no raw data is left in instance_size_stats"
    assert [str(r.kept) for r in november] == [
        "kept 6 rows of monthly 2025-11-01 in database_size_aggregations: raw data before 2026-02-01 is gone",
        f"kept 3 rows of monthly 2025-11-01 in instance_size_aggregations: {none_left}",
    ]
    assert march[0].kept is None and march[0].rows == 6  # the database level is complete there
    assert (
        str(march[1].kept) == f"kept 3 rows of monthly 2026-03-01 in instance_size_aggregations: {none_left}"
    )
    after = aggregate_rows(history)
    assert {k: v for k, v in after.items() if k[0] == INST_AGG.name} == {
        k: v for k, v in before.items() if k[0] == INST_AGG.name
    }
    with history.connect() as conn:
        horizon = read_horizon(conn, INSTANCE)
    assert horizon.day == EVERYTHING and horizon.earliest_raw_day is None


def test_the_platform_dropping_raw_and_aggregates_alike_is_still_a_purge(history: sa.Engine) -> None:
    """The origin's cleanup drops the old months of all four tables: the record still tells."""
    assert {r["raw_table"]: r["first_raw_day"] for r in recorded(history)} == {
        "database_size_stats": date(2025, 10, 1),
        "instance_size_stats": date(2025, 10, 1),
    }
    purge_by_delete(history)
    with history.begin() as conn:
        for table in (DB_AGG, INST_AGG):
            conn.execute(sa.delete(table).where(table.c.period_start < HORIZON))
    before = aggregate_rows(history)
    february = _write(history, Period.MONTHLY, "2026-02-01")
    assert [r.kept.rows if r.kept else None for r in february] == [6, 3]
    assert aggregate_rows(history) == before
    with history.connect() as conn:
        horizon = read_horizon(conn, DATABASE)
    assert (horizon.day, horizon.why) == (
        HORIZON,
        "sizeagg saw raw data of 2025-10-01 or earlier, the earliest is 2026-02-01",
    )


def test_late_corrections_inside_the_retained_range_work_as_before(history: sa.Engine) -> None:
    purge_by_delete(history)
    raw = DATABASE.raw
    with history.begin() as conn:
        conn.execute(
            sa.update(raw)
            .where(raw.c.collected_date == date(2026, 3, 10))
            .values(size_mb=raw.c.size_mb + 700)
        )
    march = aggregation.aggregate(history, DATABASE, [window_for_key(Period.MONTHLY, "2026-03-01")])
    day = aggregation.aggregate(history, DATABASE, [window_for_key(Period.DAILY, "2026-03-10")])
    assert (march.kept, march.updated, day.kept, day.updated) == (None, 6, None, 6)
    with history.connect() as conn:
        (row, *_) = slice_rows(conn, DB_AGG, "daily", date(2026, 3, 10))
    assert row["size_change_mb"] == 701  # one day later and 700 MB bigger than the day before


# --------------------------------------------------------------------------- not a purge


def test_a_first_history_that_starts_mid_month_is_aggregated_normally(engine: sa.Engine) -> None:
    first = date(2026, 3, 11)  # a Wednesday, nothing aggregated before, nothing purged
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, first, date(2026, 3, 20))
    results = {
        period: _write(engine, period, *keys)
        for period, keys in {
            Period.DAILY: ("2026-03-11", "2026-03-20"),
            Period.WEEKLY: ("2026-03-09", "2026-03-16"),
            Period.MONTHLY: ("2026-03-01",),
            Period.QUARTERLY: ("2026-01-01",),
        }.items()
    }
    assert all(r.kept is None and r.read_from is not None for rs in results.values() for r in rs)
    with engine.connect() as conn:
        month = slice_rows(conn, DB_AGG, "monthly", date(2026, 3, 1))
        first_day = slice_rows(conn, INST_AGG, "daily", first)
        horizon = read_horizon(conn, DATABASE)
    assert [(r["data_count"], r["size_change_mb"]) for r in month] == [(10, 0)] * 4
    assert [(r["data_count"], r["trend_direction"]) for r in first_day] == [(1, "stable")] * 2
    assert (horizon.day, horizon.first_raw_day) == (None, first)


def test_a_collector_that_was_down_for_a_few_days_is_not_a_purge(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, date(2026, 3, 1), date(2026, 3, 4))
        fill_days(conn, ids, date(2026, 3, 9), date(2026, 3, 20))  # down 03-05..03-08
    for period in PERIODS:
        for level in LEVELS:
            aggregation.aggregate(engine, level, windows_between(period, *_span(period)))
    with engine.begin() as conn:  # the collector delivers the missing days late
        fill_days(conn, ids, date(2026, 3, 5), date(2026, 3, 8))
    again = _write(engine, Period.DAILY, "2026-03-05", "2026-03-09")
    month = _write(engine, Period.MONTHLY, "2026-03-01")
    assert [(r.kept, r.inserted) for r in again] == [(None, 16), (None, 8)]
    assert [(r.kept, r.updated) for r in month] == [(None, 4), (None, 2)]
    with engine.connect() as conn:
        assert read_horizon(conn, DATABASE).day is None
        assert [r["data_count"] for r in slice_rows(conn, DB_AGG, "monthly", date(2026, 3, 1))] == [20] * 4


def _span(period: Period) -> tuple[str, str]:
    return {
        Period.DAILY: ("2026-03-01", "2026-03-20"),
        Period.WEEKLY: ("2026-02-23", "2026-03-16"),
        Period.MONTHLY: ("2026-03-01", "2026-03-01"),
        Period.QUARTERLY: ("2026-01-01", "2026-01-01"),
    }[period]


def test_a_history_extended_back_moves_the_record_back(engine: sa.Engine) -> None:
    """The collector imports older history: nothing was purged, the older days are simply new."""
    with engine.begin() as conn:
        ids = add_instances(conn, 1)
        fill_days(conn, ids, date(2026, 3, 1), date(2026, 3, 10))
    _write(engine, Period.DAILY, "2026-03-01")
    with engine.begin() as conn:
        fill_days(conn, ids, date(2026, 2, 20), date(2026, 2, 28))
    february = _write(engine, Period.MONTHLY, "2026-02-01")
    march_first = _write(engine, Period.DAILY, "2026-03-01")
    assert [(r.kept, r.rows) for r in february + march_first] == [(None, 2), (None, 1), (None, 2), (None, 1)]
    assert {r["raw_table"]: r["first_raw_day"] for r in recorded(engine)} == {
        "database_size_stats": date(2026, 2, 20),
        "instance_size_stats": date(2026, 2, 20),
    }
