"""defs/housekeeping/retention.py: old Dagster runs go, unless a session or a partition still needs them.

Runs are real runs of the period jobs in an instance (their materializations are
what the late-data sensor and the UI read); "old" is a `now` moved past the age.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from sizeagg_pipeline.core import sessions
from sizeagg_pipeline.core.sessions import Outcome, SyncType
from sizeagg_pipeline.defs.housekeeping import retention
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline_tests.support.data import three_active_one_inactive
from sizeagg_pipeline_tests.support.execution import DAY, gated_tags
from sizeagg_pipeline_tests.support.session_rows import run_period_jobs, tick_partitions

AGE = timedelta(days=90)


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    return three_active_one_inactive(engine)


def _exists(instance: dg.DagsterInstance, run_id: str) -> bool:
    return instance.get_run_by_id(run_id) is not None


def test_old_runs_are_deleted_except_those_still_needed(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    partitions = tick_partitions(DAY)
    first = run_period_jobs(dagster_instance, gated_tags(), partitions)  # four partitions materialized
    again = run_period_jobs(dagster_instance, gated_tags(), {"daily": partitions["daily"]})["daily"]
    superseded, in_use = first["daily"], first["weekly"]  # `again` holds the daily partition now
    failed = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.FAILURE)  # materialized nothing
    started = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.STARTED)
    session_run = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.SUCCESS)
    with data.begin() as conn:
        # a running session names the session run and the superseded daily run
        session_id = sessions.open_session(
            conn,
            sync_type=SyncType.MANUAL,
            details={
                "execution": "manual:x",
                "dagster_run_ids": [superseded.run_id],
                "session_run_id": session_run.run_id,
            },
        )

    assert retention.prune(dagster_instance, data, datetime.now(UTC), AGE).deleted == 0  # nothing is old yet

    later = datetime.now(UTC) + AGE + timedelta(days=1)
    pruned = retention.prune(dagster_instance, data, later, AGE)
    assert (pruned.deleted, pruned.kept_latest, pruned.kept_in_use) == (1, 4, 2), pruned
    assert not _exists(dagster_instance, failed.run_id)
    for kept in (
        again,
        first["weekly"],
        first["monthly"],
        first["quarterly"],
        superseded,
        session_run,
        started,
    ):
        assert _exists(dagster_instance, kept.run_id)
    # the partitions still read as materialized (the UI, the late-data sensor)
    daily = dg.AssetKey("database_size_daily")
    assert partitions["daily"] in dagster_instance.get_materialized_partitions(daily)

    with data.begin() as conn:
        sessions.finalise_session(conn, session_id, Outcome.failed("done"))
    pruned = retention.prune(dagster_instance, data, later, AGE)
    assert (pruned.deleted, pruned.kept_latest, pruned.kept_in_use) == (2, 4, 0), pruned
    assert not _exists(dagster_instance, superseded.run_id) and not _exists(
        dagster_instance, session_run.run_id
    )
    assert _exists(dagster_instance, in_use.run_id) and _exists(dagster_instance, started.run_id)
    assert partitions["daily"] in dagster_instance.get_materialized_partitions(daily)
    assert str(retention.prune(dagster_instance, data, later, AGE)).startswith("deleted 0 runs; kept 4 ")


def test_a_prune_deletes_at_most_its_limit_oldest_first(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    runs = [create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.SUCCESS) for _ in range(5)]
    later = datetime.now(UTC) + AGE + timedelta(days=1)
    assert retention.prune(dagster_instance, data, later, AGE, limit=3).deleted == 3
    assert [_exists(dagster_instance, r.run_id) for r in runs] == [False, False, False, True, True]


def test_the_retention_job_runs_every_morning_by_default(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    assert retention.dagster_run_retention.default_status == dg.DefaultScheduleStatus.RUNNING
    old = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.SUCCESS)
    result = retention.dagster_run_retention_job.execute_in_process(
        instance=dagster_instance, resources={"db": AppDatabase(url=app_url)}
    )
    assert result.success
    messages = [
        e.message for e in dagster_instance.all_logs(result.run_id) if "runs older than 90 days" in e.message
    ]
    assert messages == [
        "runs older than 90 days: deleted 0 runs; kept 0 that hold a partition's latest "
        "materialization and 0 that a running session names"
    ]
    assert _exists(dagster_instance, old.run_id)  # 90 days (the default) have not passed
