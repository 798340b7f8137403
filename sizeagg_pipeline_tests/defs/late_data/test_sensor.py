"""defs/late_data/sensor.py: a corrected raw day re-materializes exactly the partitions it invalidates,
and the gate closes that execution with one session (issue 4.3).

What changed and what that invalidates is computed in core/late_data.py
(core/test_late_data.py); here the sensor's requests are executed in process, as
the daemon would launch them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import QUIET
from sizeagg_pipeline.core import schema
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.late_data import sensor as late_sensor
from sizeagg_pipeline.defs.sessions import vocabulary
from sizeagg_pipeline.defs.sessions.gate import gate_tick
from sizeagg_pipeline_tests.support.data import two_instances_observed
from sizeagg_pipeline_tests.support.session_rows import assert_ended, run_session_job, session_ids_of

DB = schema.database_size_stats
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
ACTIVE = 2


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Two instances, two databases each, every day of 2026-02-16..2026-03-18."""
    return two_instances_observed(engine)


def _execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.DagsterRun:
    """Run a sensor's request in process, as the daemon would launch it."""
    assert request.job_name is not None  # the sensor names the job of every request
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
        tags = {vocabulary.RANGE_START_TAG: first, vocabulary.RANGE_END_TAG: last}
        result = defs.resolve_job_def(f"{period}_aggregation_job").execute_in_process(
            run_config=QUIET, instance=dagster_instance, tags=tags
        )
        assert result.success
    baseline = late_sensor.observe_tick(dagster_instance, data, None, NOW, 120)
    assert baseline.skip_reason is not None and baseline.skip_reason.skip_message is not None
    assert not baseline.run_requests and "baseline" in baseline.skip_reason.skip_message
    assert not late_sensor.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120).run_requests

    # the collector corrects one database of 2026-03-04 (a Wednesday)
    with data.begin() as conn:
        conn.execute(
            sa.update(DB)
            .where(
                DB.c.collected_date == date(2026, 3, 4), DB.c.instance_id == 1, DB.c.database_name == "db0"
            )
            .values(size_mb=10_000)
        )
    observed = late_sensor.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120)
    requests = observed.run_requests
    assert requests is not None
    described = [
        (
            r.job_name,
            r.partition_key or f"{r.tags[vocabulary.RANGE_START_TAG]}...{r.tags[vocabulary.RANGE_END_TAG]}",
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
    execution_id = requests[0].tags[vocabulary.EXECUTION_TAG]
    assert execution_id.startswith("late:1:")
    assert all(vocabulary.RUNS_TAG not in r.tags for r in requests)  # four runs, as a tick: the default
    assert [e.asset_key.to_user_string() for e in observed.asset_events] == ["database_size_stats"]
    # evaluated again (its cursor was lost): the same run keys, so nothing launches twice
    # SensorResult.run_requests is typed Optional but is always a list (dagster fills in [])
    assert [
        r.run_key
        for r in late_sensor.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120).run_requests  # type: ignore[union-attr]
    ] == [r.run_key for r in requests]
    # with the new cursor, nothing more
    assert not late_sensor.observe_tick(dagster_instance, data, observed.cursor, NOW, 120).run_requests

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
    gate = gate_tick(dagster_instance, data, None, datetime.now(UTC), timedelta(hours=2))
    assert gate.run_requests is not None
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


def test_a_purge_is_not_late_data_and_moves_the_raw_assets_horizon(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """The platform drops February: its days vanish from the fingerprints, nothing is re-run."""
    for period, (first, last) in {
        "daily": ("2026-02-16", "2026-03-18"),
        "weekly": ("2026-02-16", "2026-03-16"),
        "monthly": ("2026-02-01", "2026-03-01"),
        "quarterly": ("2026-01-01", "2026-01-01"),
    }.items():
        tags = {vocabulary.RANGE_START_TAG: first, vocabulary.RANGE_END_TAG: last}
        job = defs.resolve_job_def(f"{period}_aggregation_job")
        assert job.execute_in_process(run_config=QUIET, instance=dagster_instance, tags=tags).success
    baseline = late_sensor.observe_tick(dagster_instance, data, None, NOW, 120)
    assert [(e.asset_key.to_user_string(), e.metadata["horizon"].value) for e in baseline.asset_events] == [
        ("database_size_stats", "none"),
        ("instance_size_stats", "none"),
    ]

    with data.begin() as conn:
        for raw in (schema.database_size_stats, schema.instance_size_stats):
            conn.execute(sa.delete(raw).where(raw.c.collected_date < date(2026, 3, 1)))
    purged = late_sensor.observe_tick(dagster_instance, data, baseline.cursor, NOW, 120)
    assert not purged.run_requests
    assert purged.skip_reason is not None and purged.skip_reason.skip_message is not None
    assert purged.skip_reason.skip_message.startswith(
        "changed, not aggregated yet or kept beyond the raw horizon"
    )
    assert [
        (e.asset_key.to_user_string(), e.metadata["horizon"].value, e.metadata["kept_before_horizon"].value)
        for e in purged.asset_events
    ] == [
        ("database_size_stats", "2026-03-01", "raw data before 2026-03-01 is gone"),
        ("instance_size_stats", "2026-03-01", "raw data before 2026-03-01 is gone"),
    ]
    assert not late_sensor.observe_tick(dagster_instance, data, purged.cursor, NOW, 120).asset_events

    # a correction of the horizon's own day: only what does not read the purged days is re-run
    with data.begin() as conn:
        conn.execute(
            sa.update(DB).where(DB.c.collected_date == date(2026, 3, 1)).values(size_mb=DB.c.size_mb + 1)
        )
    corrected = late_sensor.observe_tick(dagster_instance, data, purged.cursor, NOW, 120)
    assert [(r.job_name, r.partition_key) for r in corrected.run_requests or []] == [
        ("daily_aggregation_job", "2026-03-02")  # 03-01 itself, its week, March and Q1 compare with February
    ]
