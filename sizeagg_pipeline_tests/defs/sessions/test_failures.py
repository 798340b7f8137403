"""defs/sessions/failures.py: the run-status sensors end the session of a failed or cancelled step.

The step died with its session still running (the database refused even the
finaliser), or Terminate reached a step that never handled it.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from sizeagg_pipeline.core import sessions
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline.defs.sessions import failures
from sizeagg_pipeline.defs.sessions.asset import aggregation_session_job
from sizeagg_pipeline_tests.support.execution import (
    ACTIVE,
    DAY,
    EXECUTION,
    allow_updates,
    gated_tags,
    reject_updates,
)
from sizeagg_pipeline_tests.support.session_rows import (
    assert_ended,
    record_rows,
    run_period_jobs,
    run_session_job,
    session_ids_of,
    session_row,
    tick_partitions,
)


def test_session_step_that_cannot_finalise_is_closed_by_the_failure_sensor(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    """The step dies with its session running (the database refused even the finaliser)."""
    run_period_jobs(dagster_instance, gated_tags(), tick_partitions(DAY))
    # the session opens (running); every later change of its status is refused
    reject_updates(data, "sync_sessions", "simulated lost connection", when="NEW.status <> 'running'")
    result = run_session_job(dagster_instance, gated_tags())
    assert result.dagster_run.status == dg.DagsterRunStatus.FAILURE
    [session_id] = session_ids_of(data, EXECUTION)
    assert session_row(data, session_id)["status"] == "running"
    assert {r["status"] for r in record_rows(data, session_id)} == {"running"}

    allow_updates(data, "sync_sessions")  # the database is back
    with dg.build_run_status_sensor_context(
        sensor_name="aggregation_session_failed",
        dagster_instance=dagster_instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"db": AppDatabase(url=app_url)},
    ) as context:
        failures.aggregation_session_failed(context.for_run_failure())
    records = assert_ended(data, session_id, "failed", total=ACTIVE)
    message = records[0]["error_message"]
    assert message.startswith(f"session step run {result.dagster_run.run_id[:8]} ended FAILURE")
    assert "simulated lost connection" in message


def test_terminated_session_run_is_cancelled_by_the_status_sensor(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    """Terminate reached a step that never handled it: the CANCELED sensor ends the session."""
    run = create_run_for_test(
        dagster_instance,
        job_name=aggregation_session_job.name,
        status=dg.DagsterRunStatus.STARTED,
        tags=gated_tags(),
    )
    with data.begin() as conn:
        session_id = sessions.open_session(
            conn,
            sync_type=SyncType.SCHEDULED,
            details={"execution": EXECUTION, "session_run_id": run.run_id},
        )
    dagster_instance.report_run_canceled(run)
    [event] = dagster_instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_CANCELED)
    canceled_run = dagster_instance.get_run_by_id(run.run_id)
    assert canceled_run is not None and event.dagster_event is not None
    with dg.build_run_status_sensor_context(
        sensor_name="aggregation_session_cancelled",
        dagster_instance=dagster_instance,
        dagster_run=canceled_run,
        dagster_event=event.dagster_event,
        resources={"db": AppDatabase(url=app_url)},
    ) as context:
        failures.aggregation_session_cancelled(context)
    records = assert_ended(data, session_id, "cancelled", total=ACTIVE, message="cancelled by user")
    assert records[0]["error_message"] == (
        f"session step run {run.run_id[:8]} was terminated: cancelled by user"
    )
