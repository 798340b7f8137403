"""Issue 4.3: late or corrected raw rows re-materialize exactly the partitions they invalidate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline import defs, executions, observations, sensors
from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.periods import Period, window_for_key
from sizeagg_pipeline.headless import QUIET

from .conftest import add_db_rows, add_instances, fill_days
from .session_rows import assert_ended, run_session_job, session_ids_of

DB = schema.database_size_stats
INST = schema.instance_size_stats
SINCE = date(2026, 2, 1)
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
ACTIVE = 2


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, date(2026, 2, 16), date(2026, 3, 18), databases=2)
    return engine


def changes(engine: sa.Engine, before: dict) -> tuple[dict[str, list[date]], dict]:
    with engine.connect() as conn:
        after = observations.fingerprints(conn, SINCE)
    return observations.changed_days(before, after, SINCE), after


def test_fingerprints_notice_new_updated_deleted_rows_per_raw_table(data: sa.Engine) -> None:
    with data.connect() as conn:
        base = observations.fingerprints(conn, SINCE)
    for level in ("database", "instance"):
        assert (
            len(base[level]) == 31 and min(base[level]) == "2026-02-16" and max(base[level]) == "2026-03-18"
        )
    assert changes(data, base)[0] == {}  # nothing changed, nothing reported

    with data.connect() as conn:
        day_of_7 = conn.execute(sa.select(DB.c.collected_date).where(DB.c.id == 7)).scalar_one()
    steps = [
        (
            "updated size",
            sa.update(DB).where(DB.c.id == 7).values(size_mb=DB.c.size_mb + 1),
            "database",
            day_of_7,
        ),
        (
            "swapped sizes",
            sa.update(DB)
            .where(DB.c.collected_date == date(2026, 3, 2), DB.c.instance_id == 1)
            .values(size_mb=sa.case((DB.c.database_name == "db0", 111), else_=110)),
            "database",
            date(2026, 3, 2),
        ),
        (
            "deleted row",
            sa.delete(DB).where(DB.c.collected_date == date(2026, 3, 5), DB.c.instance_id == 2),
            "database",
            date(2026, 3, 5),
        ),
        (
            "soft-deleted instance row",
            sa.update(INST).where(INST.c.collected_date == date(2026, 3, 6)).values(is_deleted=True),
            "instance",
            date(2026, 3, 6),
        ),
        (
            "re-collected",
            sa.update(DB).where(DB.c.collected_date == date(2026, 3, 7)).values(collected_at=NOW),
            "database",
            date(2026, 3, 7),
        ),
    ]
    current = base
    for what, statement, level, day in steps:
        with data.begin() as conn:
            conn.execute(statement)
        changed, current = changes(data, current)
        assert changed == {level: [day]}, what
    with data.begin() as conn:  # a late day nobody had seen
        add_db_rows(
            conn,
            [{"instance_id": 1, "database_name": "db0", "size_mb": 5, "collected_date": date(2026, 3, 19)}],
        )
    assert changes(data, current)[0] == {"database": [date(2026, 3, 19)]}


def test_affected_partitions_are_the_windows_and_their_successors_of_one_level() -> None:
    aggregated = {
        Period.DAILY: {f"2026-02-{d:02d}" for d in range(16, 29)}
        | {f"2026-03-{d:02d}" for d in range(1, 19)},
        Period.WEEKLY: {"2026-02-16", "2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16"},
        Period.MONTHLY: {"2026-02-01", "2026-03-01"},
        Period.QUARTERLY: {"2026-01-01"},
    }
    # Q2 exists at the instance level only (its database level failed)
    materialized = {
        "database": aggregated,
        "instance": {**aggregated, Period.QUARTERLY: {"2026-01-01", "2026-04-01"}},
    }

    def keys(plan: observations.Plan) -> dict[Period, list[tuple[str, list[str]]]]:
        return {p: [(w.key, sorted(levels)) for w, levels in ws.items()] for p, ws in plan.items()}

    db = ["database"]
    assert keys(observations.affected_windows({"database": [date(2026, 3, 4)]}, materialized)) == {
        Period.DAILY: [("2026-03-04", db), ("2026-03-05", db)],
        Period.WEEKLY: [("2026-03-02", db), ("2026-03-09", db)],
        Period.MONTHLY: [("2026-03-01", db)],  # April was never aggregated: not computed now
        Period.QUARTERLY: [("2026-01-01", db)],  # nor Q2 at the database level
    }
    both = ["database", "instance"]
    plan = observations.affected_windows(
        {
            "database": [date(2026, 2, 28), date(2026, 3, 25)],
            "instance": [date(2026, 3, 31), date(2026, 3, 1)],
        },
        materialized,
    )
    assert keys(plan) == {
        # 03-25 and 03-31 were not aggregated yet: the tick's business
        Period.DAILY: [("2026-02-28", db), ("2026-03-01", both), ("2026-03-02", ["instance"])],
        Period.WEEKLY: [("2026-02-23", both), ("2026-03-02", both)],
        Period.MONTHLY: [("2026-02-01", db), ("2026-03-01", both)],
        Period.QUARTERLY: [("2026-01-01", both), ("2026-04-01", ["instance"])],
    }
    groups = observations.run_groups(plan[Period.DAILY])
    assert [(a.key, b.key, sorted(levels)) for a, b, levels in groups] == [
        ("2026-02-28", "2026-02-28", db),
        ("2026-03-01", "2026-03-01", both),
        ("2026-03-02", "2026-03-02", ["instance"]),
    ]
    same = {
        window_for_key(Period.DAILY, k): frozenset(db) for k in ("2026-03-01", "2026-03-02", "2026-03-04")
    }
    assert [(a.key, b.key) for a, b, _ in observations.run_groups(same)] == [
        ("2026-03-01", "2026-03-02"),
        ("2026-03-04", "2026-03-04"),
    ]


def _execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.DagsterRun:
    """Run a sensor's request in process, as the daemon would launch it."""
    job = defs.resolve_job_def(request.job_name)
    tags = dict(request.tags)
    if request.partition_key:
        tags["dagster/partition"] = request.partition_key
    result = job.execute_in_process(
        run_config=QUIET,
        instance=instance,
        partition_key=request.partition_key,
        tags=tags,
        asset_selection=request.asset_selection,
        raise_on_error=False,
    )
    return result.dagster_run


def _materialized_since(instance: dg.DagsterInstance, storage_id: int) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for level in ("database", "instance"):
        for period in ("daily", "weekly", "monthly", "quarterly"):
            key = dg.AssetKey(f"{level}_size_{period}")
            keys = instance.get_materialized_partitions(key, after_cursor=storage_id)
            if keys:
                result[key.to_user_string()] = keys
    return result


def _latest_storage_id(instance: dg.DagsterInstance) -> int:
    return instance.event_log_storage.get_maximum_record_id() or 0


def test_corrected_day_re_materializes_exactly_the_affected_partitions(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    # Aggregated so far: days 03-01..03-18, weeks 03-02..03-16, February and March, Q1.
    ranges = {
        "daily": ("2026-03-01", "2026-03-18"),
        "weekly": ("2026-03-02", "2026-03-16"),
        "monthly": ("2026-02-01", "2026-03-01"),
        "quarterly": ("2026-01-01", "2026-01-01"),
    }
    for period, (first, last) in ranges.items():
        tags = {executions.RANGE_START_TAG: first, executions.RANGE_END_TAG: last}
        result = defs.resolve_job_def(f"{period}_aggregation_job").execute_in_process(
            run_config=QUIET, instance=dagster_instance, tags=tags
        )
        assert result.success
    baseline = sensors.observe_tick(dagster_instance, data, None, NOW, 120)
    assert not baseline.run_requests and "baseline" in baseline.skip_reason.skip_message
    assert not sensors.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120).run_requests

    # the collector corrects one database of 2026-03-04 (a Wednesday)
    with data.begin() as conn:
        conn.execute(
            sa.update(DB)
            .where(
                DB.c.collected_date == date(2026, 3, 4), DB.c.instance_id == 1, DB.c.database_name == "db0"
            )
            .values(size_mb=10_000)
        )
    observed = sensors.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120)
    requests = observed.run_requests
    described = [
        (
            r.job_name,
            r.partition_key or f"{r.tags[executions.RANGE_START_TAG]}...{r.tags[executions.RANGE_END_TAG]}",
            [k.to_user_string() for k in r.asset_selection or []],
        )
        for r in requests
    ]
    # only database_size_stats changed: only database-level partitions
    assert described == [
        ("daily_aggregation_job", "2026-03-04...2026-03-05", ["database_size_daily"]),  # and the next day
        ("weekly_aggregation_job", "2026-03-02...2026-03-09", ["database_size_weekly"]),
        ("monthly_aggregation_job", "2026-03-01", ["database_size_monthly"]),  # April does not exist yet
        ("quarterly_aggregation_job", "2026-01-01", ["database_size_quarterly"]),
    ]
    execution_id = requests[0].tags[executions.EXECUTION_TAG]
    assert execution_id.startswith("late:1:")
    assert {r.tags[executions.RUNS_TAG] for r in requests} == {"4"}
    assert [e.asset_key.to_user_string() for e in observed.asset_events] == ["database_size_stats"]
    # evaluated again (its cursor was lost): the same run keys, so nothing launches twice
    assert [
        r.run_key
        for r in sensors.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120).run_requests
    ] == [r.run_key for r in requests]
    # with the new cursor, nothing more
    assert not sensors.observe_tick(dagster_instance, data, observed.cursor, NOW, 120).run_requests

    before = _latest_storage_id(dagster_instance)
    for request in requests:
        assert _execute(dagster_instance, request).status == dg.DagsterRunStatus.SUCCESS
    assert _materialized_since(dagster_instance, before) == {
        "database_size_daily": {"2026-03-04", "2026-03-05"},
        "database_size_weekly": {"2026-03-02", "2026-03-09"},
        "database_size_monthly": {"2026-03-01"},
        "database_size_quarterly": {"2026-01-01"},
    }
    agg = schema.database_size_aggregations
    with data.connect() as conn:
        rows = dict(
            conn.execute(
                sa.select(agg.c.period_start, agg.c.max_size_mb).where(
                    agg.c.instance_id == 1, agg.c.database_name == "db0", agg.c.period_type == "daily"
                )
            ).all()
        )
        change = conn.execute(
            sa.select(agg.c.size_change_mb).where(
                agg.c.instance_id == 1,
                agg.c.database_name == "db0",
                agg.c.period_type == "daily",
                agg.c.period_start == date(2026, 3, 5),
            )
        ).scalar_one()
    assert rows[date(2026, 3, 4)] == 10_000
    assert change < -9_000  # 03-05 compared with the corrected 03-04

    # the gate closes the late-data execution with one session
    gate = sensors.gate_tick(dagster_instance, data, None, datetime.now(UTC), timedelta(hours=2))
    [session_request] = gate.run_requests
    assert run_session_job(dagster_instance, dict(session_request.tags)).success
    [session_id] = session_ids_of(data, execution_id)
    records = assert_ended(data, session_id, "completed", total=ACTIVE)
    periods = records[0]["sync_details"]["periods"]
    assert periods["daily"] == {
        "partitions": ["2026-03-04...2026-03-05"],
        "database_rows": 4,
        "instance_rows": 0,
    }
    assert periods["weekly"]["partitions"] == ["2026-03-02...2026-03-09"]
    assert [r["items_synced"] for r in records] == [12, 12]  # database rows: (2 + 2 + 1 + 1) x 2 databases
