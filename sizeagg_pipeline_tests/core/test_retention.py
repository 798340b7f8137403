"""core/retention.py: what goes, what stays and why, on both backends and on PostgreSQL partitions.

Six months of history (2025-10-01..2026-03-31), every window aggregated, retention
computed as of TODAY: raw rows and daily aggregates older than 6 months (before
2026-02-01), weekly aggregates older than 7 months (before 2026-01-01). The Dagster
job around it is in defs/retention/test_job.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, retention, schema
from sizeagg_pipeline.core.levels import DATABASE, INSTANCE, LEVELS
from sizeagg_pipeline.core.periods import Period, window_for_key, windows_between
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR, Retention
from sizeagg_pipeline_tests.support.data import add_db_rows
from sizeagg_pipeline_tests.support.history import (
    HORIZON,
    MONTHS,
    aggregate_everything,
    aggregate_rows,
    origin_months,
    recorded,
    six_months,
)
from sizeagg_pipeline_tests.support.origin_schema import partitions_of

TODAY = date(2026, 8, 15)
SETTINGS = Retention(raw_months=6, daily_months=6, weekly_months=7)
WEEKLY_CUTOFF = date(2026, 1, 1)
LATER = timedelta(seconds=2)  # a rewrite after a change, past the second of slack retention allows


@pytest.fixture
def history(engine: sa.Engine) -> sa.Engine:
    six_months(engine)
    aggregate_everything(engine)
    return engine


def _raw_days(engine: sa.Engine) -> dict[str, dict[date, int]]:
    """Raw rows per table and collected_date."""
    result: dict[str, dict[date, int]] = {}
    with engine.connect() as conn:
        for level in LEVELS:
            raw = level.raw
            rows = conn.execute(
                sa.select(raw.c.collected_date, sa.func.count()).group_by(raw.c.collected_date)
            )
            result[raw.name] = dict(rows.all())
    return result


def _apply(engine: sa.Engine, settings: Retention = SETTINGS) -> retention.RetentionReport:
    lines: list[str] = []
    return retention.apply_retention(engine, settings, TODAY, lines.append)


def _expected_after(rows: dict, raw_days: dict) -> tuple[dict, dict]:
    """What the settings leave of the aggregates and the raw days."""
    keep = {
        key: row
        for key, row in rows.items()
        if not (key[1] == "daily" and key[2] < HORIZON)
        and not (key[1] == "weekly" and key[2] < WEEKLY_CUTOFF)
    }
    days = {table: {d: n for d, n in per_day.items() if d >= HORIZON} for table, per_day in raw_days.items()}
    return keep, days


def test_retention_drops_exactly_what_its_settings_say(history: sa.Engine) -> None:
    rows, raw_days = aggregate_rows(history), _raw_days(history)
    kept_rows, kept_days = _expected_after(rows, raw_days)

    report = _apply(history)

    assert aggregate_rows(history) == kept_rows  # the rest byte-identical; monthly and quarterly all there
    assert _raw_days(history) == kept_days
    purged = {t: sum(n for d, n in days.items() if d < HORIZON) for t, days in raw_days.items()}
    assert {d.table: d.total for d in report.dropped} == {
        "database_size_stats": purged["database_size_stats"],  # 123 days × 6
        "instance_size_stats": purged["instance_size_stats"],  # 123 days × 3
        "database_size_aggregations daily": 123 * 6,
        "instance_size_aggregations daily": 123 * 3,
        "database_size_aggregations weekly": 14 * 6,  # weeks 09-29..12-29 start before 2026-01-01
        "instance_size_aggregations weekly": 14 * 3,
    }
    assert purged == {"database_size_stats": 123 * 6, "instance_size_stats": 123 * 3}
    assert report.refusals == []
    why = (
        "sizeagg's retention deleted the rows before 2026-02-01; "
        "sizeagg saw raw data of 2025-10-01 or earlier, the earliest is 2026-02-01"
    )
    assert {h.raw_table: (h.day, h.why) for h in report.horizons.values()} == {
        "database_size_stats": (HORIZON, why),
        "instance_size_stats": (HORIZON, why),
    }
    assert {r["raw_table"]: r["purged_before"] for r in recorded(history)} == {
        "database_size_stats": HORIZON,
        "instance_size_stats": HORIZON,
    }
    assert report.kept() == ["monthly and quarterly aggregates: all, always"]

    again = _apply(history)  # idempotent: nothing left to drop, nothing changes
    assert again.dropped == [] and again.refusals == []
    assert aggregate_rows(history) == kept_rows
    assert _raw_days(history) == kept_days


def test_retention_off_deletes_nothing(history: sa.Engine) -> None:
    rows, raw_days = aggregate_rows(history), _raw_days(history)
    report = _apply(history, Retention(None, None, None))
    assert report.dropped == [] and aggregate_rows(history) == rows and _raw_days(history) == raw_days
    assert report.kept() == [
        "raw rows: all (SIZEAGG_RAW_RETENTION_MONTHS is off)",
        "daily aggregates: all (SIZEAGG_DAILY_RETENTION_MONTHS is off)",
        "weekly aggregates: all (SIZEAGG_WEEKLY_RETENTION_MONTHS is off)",
        "monthly and quarterly aggregates: all, always",
    ]
    assert list(recorded(history)) != [] and all(r["purged_before"] is None for r in recorded(history))


def test_a_month_not_fully_summarised_is_refused_naming_what_to_materialize(history: sa.Engine) -> None:
    db_agg, raw = schema.database_size_aggregations, DATABASE.raw
    week = sa.and_(db_agg.c.period_type == "weekly", db_agg.c.period_start == date(2025, 11, 17))
    with history.begin() as conn:  # a week of November never written at the database level
        conn.execute(sa.delete(db_agg).where(week))
    settings = Retention(raw_months=6, daily_months=None, weekly_months=None)
    report = _apply(history, settings)

    (refusal,) = report.refusals
    assert str(refusal) == (
        "kept database_size_stats 2025-11 and later months: not fully summarised — materialize "
        "database_size_weekly 2025-11-17 never written (42 raw rows to summarise)"
    )
    assert {h.raw_table: h.day for h in report.horizons.values()} == {
        "database_size_stats": date(2025, 11, 1),  # October went
        "instance_size_stats": HORIZON,  # the instance level is complete
    }
    assert min(_raw_days(history)["database_size_stats"]) == date(2025, 11, 1)

    aggregation.aggregate(history, DATABASE, [window_for_key(Period.WEEKLY, "2025-11-17")])
    now = datetime.now(UTC)
    with history.begin() as conn:  # late data after the aggregation: a row added, a row rewritten
        late = {"size_mb": 5, "collected_at": now, "created_at": now}
        add_db_rows(
            conn, [{"instance_id": 1, "database_name": "late", "collected_date": date(2025, 11, 20), **late}]
        )
        rewritten = sa.and_(raw.c.collected_date == date(2025, 12, 10), raw.c.instance_id == 2)
        conn.execute(sa.update(raw).where(rewritten).values(size_mb=raw.c.size_mb + 1, collected_at=now))
    (refusal,) = _apply(history, settings).refusals
    assert refusal.month == date(2025, 11, 1)
    assert [m.split(" written")[0] for m in refusal.missing] == [
        "database_size_daily 2025-11-20 counts 6 raw rows, the raw table has 7",
        "database_size_daily 2025-11-21",  # its previous day changed
        "database_size_weekly 2025-11-17 counts 42 raw rows, the raw table has 43",
        "database_size_weekly 2025-11-24",
        "database_size_monthly 2025-12-01",  # the month after, which compares with November, changed
    ]
    assert all(
        m.endswith(f"before the last raw change ({now:%Y-%m-%d %H:%M:%S} UTC)") for m in refusal.missing[1::2]
    )

    for period, first, last in (
        (Period.DAILY, "2025-11-20", "2025-11-21"),
        (Period.WEEKLY, "2025-11-17", "2025-11-24"),
        (Period.MONTHLY, "2025-12-01", "2025-12-01"),
    ):
        aggregation.aggregate(history, DATABASE, windows_between(period, first, last), now + LATER)
    (refusal,) = _apply(history, settings).refusals  # November went; December's changed day stays
    assert (refusal.month, [m.split(" written")[0] for m in refusal.missing]) == (
        date(2025, 12, 1),
        [
            "database_size_daily 2025-12-10",
            "database_size_daily 2025-12-11",
            "database_size_weekly 2025-12-08",
            "database_size_weekly 2025-12-15",
            "database_size_monthly 2026-01-01",
        ],
    )
    for period, first, last in (
        (Period.DAILY, "2025-12-10", "2025-12-11"),
        (Period.WEEKLY, "2025-12-08", "2025-12-15"),
        (Period.MONTHLY, "2026-01-01", "2026-01-01"),
    ):
        aggregation.aggregate(history, DATABASE, windows_between(period, first, last), now + LATER)
    final = _apply(history, settings)
    assert final.refusals == []
    assert {h.raw_table: h.day for h in final.horizons.values()} == {
        "database_size_stats": HORIZON,
        "instance_size_stats": HORIZON,
    }


# --------------------------------------------------------------------------- PostgreSQL partitions


@pytest.fixture
def origin_history(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """Origin-shaped tables (raw month partitions October..March), the history aggregated."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    for engine in origin_months(postgresql_url):
        six_months(engine)
        aggregate_everything(engine)
        yield engine


def _raw_partitions(engine: sa.Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {level.raw.name: sorted(partitions_of(conn, level.raw.name)) for level in LEVELS}


@pytest.mark.postgres
def test_raw_month_partitions_are_detached_and_dropped(origin_history: sa.Engine) -> None:
    rows, raw_days = aggregate_rows(origin_history), _raw_days(origin_history)
    kept_rows, kept_days = _expected_after(rows, raw_days)
    with origin_history.begin() as conn:  # a partition a process that died had detached, not dropped
        conn.exec_driver_sql("CREATE TABLE database_size_stats_2025_09 (LIKE database_size_stats)")
        conn.exec_driver_sql(f"COMMENT ON TABLE database_size_stats_2025_09 IS '{retention.DETACHED}'")

    report = _apply(origin_history)

    dropped = {d.table: d for d in report.dropped}
    assert dropped["database_size_stats"].partitions == [
        (f"database_size_stats_{m:%Y_%m}", days * 6)
        for m, days in zip(MONTHS[:4], (31, 30, 31, 31), strict=True)
    ]
    assert (dropped["database_size_stats"].rows, dropped["instance_size_stats"].rows) == (0, 0)
    assert _raw_partitions(origin_history) == {
        table: [f"{table}_2026_02", f"{table}_2026_03"]
        for table in ("database_size_stats", "instance_size_stats")
    }
    with origin_history.connect() as conn:
        leftovers = conn.execute(sa.text("SELECT to_regclass('database_size_stats_2025_09')")).scalar_one()
    assert leftovers is None  # the leftover of the earlier run went too
    assert aggregate_rows(origin_history) == kept_rows
    assert _raw_days(origin_history) == kept_days

    again = _apply(origin_history)
    assert again.dropped == [] and _raw_partitions(origin_history) == {
        table: [f"{table}_2026_02", f"{table}_2026_03"]
        for table in ("database_size_stats", "instance_size_stats")
    }


def _waiting(engine: sa.Engine, query_like: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE :q"
            ),
            {"q": query_like},
        ).scalar_one()


def _until(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    pytest.fail("condition not reached")


@pytest.mark.postgres
def test_a_partition_drop_never_blocks_a_concurrent_aggregate_write(origin_history: sa.Engine) -> None:
    """A reader holds the raw table (a long report, a long aggregation): the drop waits, writes do not."""
    day = [window_for_key(Period.DAILY, "2026-03-20")]
    reader = origin_history.connect()
    reader.execute(sa.text("SELECT count(*) FROM database_size_stats"))  # holds its locks until it ends
    errors: list[BaseException] = []

    def run_retention() -> None:
        try:
            _apply(origin_history, Retention(raw_months=6, daily_months=None, weekly_months=None))
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    worker = threading.Thread(target=run_retention)
    worker.start()
    try:
        _until(lambda: _waiting(origin_history, "%DETACH PARTITION%CONCURRENTLY%") == 1)
        started = time.monotonic()
        result = aggregation.aggregate(origin_history, DATABASE, day)  # while the detach waits
        elapsed = time.monotonic() - started
        assert result.updated == 6 and elapsed < 5, elapsed
        assert worker.is_alive()  # still waiting for the reader, and no write waited for it
        aggregation.aggregate(origin_history, INSTANCE, day)
    finally:
        reader.rollback()
        reader.close()
        worker.join(timeout=120)
    assert not worker.is_alive() and errors == []
    assert _raw_partitions(origin_history)["database_size_stats"] == [
        "database_size_stats_2026_02",
        "database_size_stats_2026_03",
    ]


@pytest.mark.postgres
def test_the_platforms_plain_drop_would_block_it(origin_history: sa.Engine) -> None:
    """The control: `DROP TABLE <partition>` queues an exclusive lock on the parent; writes wait behind it."""
    day = [window_for_key(Period.DAILY, "2026-03-20")]
    reader = origin_history.connect()
    reader.execute(sa.text("SELECT count(*) FROM database_size_stats"))
    threads = [
        threading.Thread(target=lambda: _drop_plainly(origin_history)),
        threading.Thread(target=lambda: aggregation.aggregate(origin_history, DATABASE, day)),
    ]
    threads[0].start()
    try:
        _until(lambda: _waiting(origin_history, "DROP TABLE%") == 1)
        threads[1].start()
        _until(lambda: _waiting(origin_history, "%") == 2)  # the write waits behind the DROP
        assert threads[1].is_alive()
    finally:
        reader.rollback()
        reader.close()
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=120)


def _drop_plainly(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE database_size_stats_2025_10")
