"""defs/aggregates/checks.py: every aggregate and raw-table check passes on good data and fails,
saying what is wrong, on data made to break it.

The checks run the way the UI runs them (`support/checks.py`): inside the period
jobs, with the partition of the run, or launched on their own. The session checks
are in defs/sessions/test_checks.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.periods import (
    Period,
    span_text,
    window_containing,
    window_for_key,
    windows_between,
)
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.aggregates.partitions import CALENDAR
from sizeagg_pipeline_tests.support.checks import Data, evaluations, recent_days, run_checks
from sizeagg_pipeline_tests.support.data import add_db_rows, add_instance_rows, add_instances


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    # In memory: these tests read evaluations from the run result, not from storage.
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def data(engine: sa.Engine) -> Data:
    """Three instances, two databases each, every day of the last 20 (checks look back 92)."""
    return recent_days(engine)


def run_period(
    instance: dg.DagsterInstance, period: Period, day: date, first_day: date | None = None
) -> dg.ExecuteInProcessResult:
    """A period run for the window of `day`, or a ranged run from the window of `first_day`."""
    job = defs.resolve_job_def(f"{period}_aggregation_job")
    last = window_containing(period, day).key
    if first_day is None:
        return job.execute_in_process(partition_key=last, instance=instance, raise_on_error=False)
    tags = {
        "dagster/asset_partition_range_start": window_containing(period, first_day).key,
        "dagster/asset_partition_range_end": last,
    }
    return job.execute_in_process(tags=tags, instance=instance, raise_on_error=False)


def step_error(result: dg.ExecuteInProcessResult, step: str) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure and e.step_key == step]
    error = failure.step_failure_data.error
    assert error is not None
    return error.message


# --------------------------------------------------------------------------- good data


def test_every_check_passes_on_good_data(
    engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance
) -> None:
    daily = run_period(dagster_instance, Period.DAILY, data.last)
    weekly = run_period(dagster_instance, Period.WEEKLY, data.last, first_day=data.first)  # ranged
    assert daily.success and weekly.success
    for result, period in ((daily, "daily"), (weekly, "weekly")):
        found = evaluations(result)
        assert set(found) == {
            (f"{level}_size_{period}", name)
            for level in ("database", "instance")
            for name in (
                "raw_rows_valid",
                "complete_raw_history",
                "data_count_matches_raw",
                f"one_row_per_{level}",
            )
        }
        assert all(e.passed for e in found.values()), [e.description for e in found.values()]
    gate = evaluations(daily)[("database_size_daily", "raw_rows_valid")]
    assert gate.blocking
    assert f"collected_date {data.last - timedelta(days=1)}..{data.last}" in gate.description

    raw = run_checks(dagster_instance, "raw")
    assert {k: e.passed for k, e in raw.items()} == {
        ("database_size_stats", "no_invalid_rows"): True,
        ("instance_size_stats", "no_invalid_rows"): True,
    }

    # The weekly asset carries the growth chart (a PNG in a data URI) and its table.
    events = [
        e
        for e in weekly.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("database_size_weekly")
    ]
    assert len(events) >= 2  # one per weekly partition of the range
    event = events[-1]
    meta = event.materialization.metadata
    chart = meta["Top 10 growth, weekly — chart"].value
    assert isinstance(chart, str)
    assert chart.startswith("![Top ") and "(data:image/png;base64," in chart
    png = base64.b64decode(chart.split("base64,", 1)[1].rstrip(")"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    table = meta["Top 10 growth, weekly — table"].value
    assert isinstance(table, str)
    assert "i3 / db1" in table
    assert "dagster/column_lineage" in meta


# --------------------------------------------------------------------------- raw rows


def test_negative_size_stops_that_days_database_aggregates(
    engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance
) -> None:
    day = data.last
    with engine.begin() as conn:
        add_db_rows(
            conn, [{"instance_id": data.ids[1], "database_name": "db9", "size_mb": -5, "collected_date": day}]
        )
    result = run_period(dagster_instance, Period.DAILY, day)
    assert not result.success
    found = evaluations(result)
    gate = found[("database_size_daily", "raw_rows_valid")]
    assert not gate.passed and gate.blocking
    for text in (
        "negative size_mb",
        "database_size_stats",
        f"instance {data.ids[1]}",
        "database 'db9'",
        str(day),
    ):
        assert text in gate.description
    assert gate.metadata["negative_size_mb"].value == 1
    assert "negative size_mb" in step_error(result, "database_size_daily")
    # The other level is unaffected: it ran and its checks passed.
    assert all(e.passed for (asset, _), e in found.items() if asset == "instance_size_daily")
    with engine.connect() as conn:
        counts = {
            t.name: conn.execute(
                sa.select(sa.func.count()).where(t.c.period_type == "daily", t.c.period_start == day)
            ).scalar_one()
            for t in (schema.database_size_aggregations, schema.instance_size_aggregations)
        }
    assert counts == {"database_size_aggregations": 0, "instance_size_aggregations": 3}

    raw = run_checks(dagster_instance, "raw")
    sweep = raw[("database_size_stats", "no_invalid_rows")]
    assert not sweep.passed and "negative size_mb in 1 row(s)" in sweep.description
    assert raw[("instance_size_stats", "no_invalid_rows")].passed


def test_orphan_instance_id_fails_the_gate(
    engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance
) -> None:
    with engine.begin() as conn:
        add_instance_rows(
            conn,
            [{"instance_id": 999, "total_size_mb": 10, "database_count": 1, "collected_date": data.last}],
        )
    result = run_period(dagster_instance, Period.DAILY, data.last)
    gate = evaluations(result)[("instance_size_daily", "raw_rows_valid")]
    assert not gate.passed
    assert "unknown instance_id in 1 row(s)" in gate.description and "instance 999" in gate.description
    assert evaluations(result)[("database_size_daily", "raw_rows_valid")].passed


def test_null_size_fails_the_gate(app_url: str, dagster_instance: dg.DagsterInstance) -> None:
    """An origin database may lack the NOT NULL: the check catches what the DDL did not."""
    engine = schema.make_engine(app_url)
    loose = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(loose)
    loose.tables["database_size_stats"].c.size_mb.nullable = True
    loose.create_all(engine)
    day = CALENDAR.today() - timedelta(days=1)
    with engine.begin() as conn:
        (instance_id,) = add_instances(conn, 1)
        conn.execute(
            loose.tables["database_size_stats"].insert(),
            [{"instance_id": instance_id, "database_name": "db0", "size_mb": None, "collected_date": day}],
        )
    engine.dispose()
    result = run_period(dagster_instance, Period.DAILY, day)
    gate = evaluations(result)[("database_size_daily", "raw_rows_valid")]
    assert not gate.passed
    assert "NULL size_mb in 1 row(s)" in gate.description and "database 'db0'" in gate.description


# --------------------------------------------------------------------------- aggregates vs raw


def test_window_checks_find_late_missing_and_stale_rows(
    engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance
) -> None:
    # A week with at least two days of data whatever today's weekday: when the last
    # day is a Monday, its week holds one day, and deleting it leaves no row to check.
    day = data.last - timedelta(days=1)
    week = window_containing(Period.WEEKLY, day)
    late_day = max(week.start, data.first)
    days_in_week = (min(week.end, data.last) - late_day).days + 1
    raw = schema.database_size_stats
    with engine.begin() as conn:  # the collector has not delivered this row yet
        conn.execute(
            sa.delete(raw).where(
                raw.c.instance_id == data.ids[0],
                raw.c.database_name == "db0",
                raw.c.collected_date == late_day,
            )
        )
    assert run_period(dagster_instance, Period.WEEKLY, day).success

    assert all(e.passed for e in run_checks(dagster_instance, "weekly").values())

    agg = schema.instance_size_aggregations
    with engine.begin() as conn:
        # late rows: one for an aggregated database, one for a database never seen
        add_db_rows(
            conn,
            [
                {
                    "instance_id": data.ids[0],
                    "database_name": "db0",
                    "size_mb": 1,
                    "collected_date": late_day,
                },
                {
                    "instance_id": data.ids[2],
                    "database_name": "new_db",
                    "size_mb": 1,
                    "collected_date": late_day,
                },
            ],
        )
        weekly = sa.and_(agg.c.period_type == "weekly", agg.c.period_start == week.start)
        conn.execute(sa.delete(agg).where(weekly, agg.c.instance_id == data.ids[1]))
        conn.execute(sa.update(agg).where(weekly, agg.c.instance_id == data.ids[2]).values(data_count=99))
        (ghost,) = add_instances_after(conn, 1)
        row = conn.execute(sa.select(agg).where(weekly, agg.c.instance_id == data.ids[0])).mappings().one()
        conn.execute(agg.insert(), [{**{k: v for k, v in row.items() if k != "id"}, "instance_id": ghost}])

    found = run_checks(dagster_instance, "weekly")
    count = found[("database_size_weekly", "data_count_matches_raw")]
    assert not count.passed
    assert (
        f"instance {data.ids[0]} database 'db0': data_count {days_in_week - 1}, raw rows {days_in_week}"
        in (count.description)
    )
    assert count.metadata["mismatched_rows"].value == 1
    coverage = found[("database_size_weekly", "one_row_per_database")]
    assert not coverage.passed
    assert "1 databases with raw data but no row" in coverage.description
    assert f"instance {data.ids[2]} database 'new_db'" in coverage.description

    instance_count = found[("instance_size_weekly", "data_count_matches_raw")]
    assert not instance_count.passed and f"data_count 99, days with a row {days_in_week}" in (
        instance_count.description
    )
    instance_coverage = found[("instance_size_weekly", "one_row_per_instance")]
    assert not instance_coverage.passed
    assert f"1 instances with raw data but no row: {week.start} instance {data.ids[1]}" in (
        instance_coverage.description
    )
    assert f"1 rows without raw data in their window: {week.start} instance {ghost}" in (
        instance_coverage.description
    )
    assert instance_coverage.metadata["missing"].value == 1


def add_instances_after(conn: sa.Connection, count: int) -> list[int]:
    """More instances, named after the ones that exist."""
    existing = conn.execute(sa.select(sa.func.count()).select_from(schema.instances)).scalar_one()
    conn.execute(
        schema.instances.insert(),
        [
            {"name": f"extra{n}", "db_type": "mysql", "host": "h", "port": 1}
            for n in range(existing, existing + count)
        ],
    )
    ids = conn.execute(sa.select(schema.instances.c.id).order_by(schema.instances.c.id)).scalars().all()
    return list(ids[existing:])


# --------------------------------------------------------------------------- the raw horizon


def test_a_rewrite_that_keeps_purged_slices_warns_and_compares_only_what_it_wrote(
    engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance
) -> None:
    assert run_period(dagster_instance, Period.WEEKLY, data.last, first_day=data.first).success
    first_week = window_containing(Period.WEEKLY, data.first)
    horizon = first_week.next().start  # the first week's raw rows go: it and the week after are kept
    with engine.begin() as conn:
        for raw in (schema.database_size_stats, schema.instance_size_stats):
            conn.execute(sa.delete(raw).where(raw.c.collected_date < horizon))

    again = run_period(dagster_instance, Period.WEEKLY, data.last, first_day=data.first)
    assert again.success
    found = {
        (e.asset_key.to_user_string(), e.check_name, e.partition): e
        for e in again.get_asset_check_evaluations()
    }
    kept_weeks = [first_week, first_week.next()]
    weeks = windows_between(Period.WEEKLY, *week_keys(data))
    for level in ("database", "instance"):
        for week in weeks:
            history = found[(f"{level}_size_weekly", "complete_raw_history", week.key)]
            assert history.severity == dg.AssetCheckSeverity.WARN
            if week in kept_weeks:
                assert not history.passed
                assert history.description == (
                    f"{week} was kept as it was, not recomputed: raw data before {horizon} is gone"
                )
            else:
                assert history.passed, history.description
            for name in ("data_count_matches_raw", f"one_row_per_{level}"):
                evaluation = found[(f"{level}_size_weekly", name, week.key)]
                assert evaluation.passed, evaluation.description
                assert ("not compared" in (evaluation.description or "")) == (week in kept_weeks)
    on_its_own = run_checks(dagster_instance, "weekly")
    assert not on_its_own[("database_size_weekly", "complete_raw_history")].passed
    assert all(e.passed for (_, name), e in on_its_own.items() if name != "complete_raw_history")


# --------------------------------------------------------------------------- what the Checks tab shows


def test_every_non_blocking_check_can_be_executed_on_its_own() -> None:
    """Dagster's canExecuteIndividually: nothing else shares the check's execution set."""
    graph = defs.resolve_asset_graph()
    keys = list(graph.asset_check_keys)
    # per aggregate: raw_rows_valid, two window checks, complete_raw_history, its freshness
    # check; then the two raw tables' checks and the two session checks
    assert len(keys) == 8 * 5 + 2 + 2
    sets: dict[str, int] = {}
    entities: list[dg.AssetKey | dg.AssetCheckKey] = [*graph.get_all_asset_keys(), *keys]
    for entity in entities:
        identifier = graph.get_execution_set_identifier(entity)
        if identifier is not None:
            sets[identifier] = sets.get(identifier, 0) + 1
    for key in keys:
        identifier = graph.get_execution_set_identifier(key)
        individually = identifier is None or sets[identifier] == 1
        blocking = graph.get(key).blocking
        assert individually != blocking, (key, blocking)
        assert blocking == (key.name == "raw_rows_valid"), key


def test_a_ranged_run_records_one_evaluation_per_partition_and_nothing_skipped(
    engine: sa.Engine, data: Data, tmp_path: Path
) -> None:
    """Dagster plans each check of a partitioned run once per partition: each plan gets its evaluation."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert run_period(instance, Period.WEEKLY, data.last, first_day=data.first).success
        weeks = [w.key for w in windows_between(Period.WEEKLY, *week_keys(data))]
        for name in ("raw_rows_valid", "data_count_matches_raw", "one_row_per_database"):
            key = dg.AssetCheckKey(dg.AssetKey("database_size_weekly"), name)
            records = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
            assert sorted(r.partition for r in records if r.partition) == weeks, name
            assert {r.status.value for r in records} == {"SUCCEEDED"}, name
            numbers = [r.evaluation.metadata for r in records if r.evaluation]
            assert len(numbers) == len(weeks)
            assert all("windows_checked" not in m for m in numbers)  # one window each: per-window numbers
        count = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("database_size_weekly"), "data_count_matches_raw"), limit=1
        )[0]
        assert count.evaluation is not None
        meta = count.evaluation.metadata
        assert meta["rows_checked"].value == 6  # three instances × two databases in one week
        assert meta["windows"].value == f"weekly {weeks[-1]}..{window_for_key(Period.WEEKLY, weeks[-1]).end}"


def test_launched_on_its_own_a_check_covers_the_chosen_or_recent_windows(
    engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance
) -> None:
    assert run_period(dagster_instance, Period.WEEKLY, data.last, first_day=data.first).success
    weeks = windows_between(Period.WEEKLY, *week_keys(data))
    recent = run_checks(dagster_instance, "weekly")[("database_size_weekly", "data_count_matches_raw")]
    assert recent.passed
    assert (
        recent.metadata["windows_checked"].value == len(weeks)
        and recent.metadata["failing_windows"].value == 0
    )
    assert "rows_checked" not in recent.metadata  # numbers over several windows carry other names
    chosen = run_checks(dagster_instance, "weekly", {"windows": weeks[-1].key})[
        ("database_size_weekly", "one_row_per_database")
    ]
    assert (
        chosen.passed
        and chosen.metadata["windows"].value == f"weekly {span_text(weeks[-1].start, weeks[-1].end)}"
    )
    assert chosen.metadata["groups_with_raw_data"].value == 6


def week_keys(data: Data) -> tuple[str, str]:
    return window_containing(Period.WEEKLY, data.first).key, window_containing(Period.WEEKLY, data.last).key
