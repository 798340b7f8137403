"""defs/sessions/janitor.py: the janitor ends running sessions whose run is gone, finished or too old,
once, and its sensor runs by default.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from sizeagg_pipeline.core import sessions
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline.defs.sessions import janitor
from sizeagg_pipeline_tests.support.execution import ACTIVE, STALE_AFTER
from sizeagg_pipeline_tests.support.session_rows import (
    all_session_rows,
    assert_ended,
    record_rows,
    session_row,
)


def _open_for_run(engine: sa.Engine, run_id: str) -> str:
    with engine.begin() as conn:
        return sessions.open_session(
            conn, sync_type=SyncType.SCHEDULED, details={"execution": f"x:{run_id}", "session_run_id": run_id}
        )


def test_janitor_finalises_stale_sessions_once(data: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    now = datetime.now(UTC)
    gone = _open_for_run(data, "2b1e7a6c-0000-4000-8000-000000000000")  # its run no longer exists
    failed_run = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.FAILURE)
    finished = _open_for_run(data, failed_run.run_id)
    live_run = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.STARTED)
    alive = _open_for_run(data, live_run.run_id)

    done = janitor.sweep(dagster_instance, data, now, STALE_AFTER)
    assert len(done) == 2
    assert_ended(data, gone, "failed", total=ACTIVE, message="no longer exists")
    assert_ended(data, finished, "failed", total=ACTIVE, message=f"{failed_run.run_id[:8]} ended FAILURE")
    assert session_row(data, alive)["status"] == "running"  # its run may still finish it

    # the host is lost: nothing ends that run, and it is now older than the max runtime
    later = now + STALE_AFTER + timedelta(minutes=1)
    assert len(janitor.sweep(dagster_instance, data, later, STALE_AFTER)) == 1
    assert_ended(data, alive, "failed", total=ACTIVE, message="lost worker or host")

    snapshot = (all_session_rows(data), [record_rows(data, s) for s in (gone, finished, alive)])
    assert janitor.sweep(dagster_instance, data, later, STALE_AFTER) == []  # the janitor twice
    assert (all_session_rows(data), [record_rows(data, s) for s in (gone, finished, alive)]) == snapshot


def test_janitor_sensor_runs_by_default(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    gone = _open_for_run(data, "7c0ffee0-0000-4000-8000-000000000000")
    with dg.build_sensor_context(
        instance=dagster_instance, resources={"db": AppDatabase(url=app_url)}
    ) as context:
        result = janitor.session_janitor.evaluate_tick(context)
    assert "finalised 1" in (result.skip_message or "")
    assert_ended(data, gone, "failed", total=ACTIVE, message="no longer exists")
    assert defs.sensors is not None
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
