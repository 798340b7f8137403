"""defs/sessions/dead_runs.py: who counts as dead, and what healing a dead run does.

Runs here are records in a real Dagster instance whose owner tags name a process
that is alive (this one), gone (a pid whose start time is not its own — a reused
pid — or a process that exited), or on another host (judged by its heartbeat).
Real `sizeagg run` processes killed with SIGKILL are in cli/test_run_crashes.py
and e2e/test_dead_runs.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from sizeagg_pipeline.core import sessions
from sizeagg_pipeline.core.owner import Owner
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline.defs.aggregates.assets import APP_DB_POOL
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline.defs.sessions import dead_runs
from sizeagg_pipeline.defs.sessions.asset import aggregation_session_job
from sizeagg_pipeline.defs.sessions.vocabulary import EXECUTION_TAG, owner_tags
from sizeagg_pipeline_tests.support.data import three_active_one_inactive
from sizeagg_pipeline_tests.support.execution import ACTIVE
from sizeagg_pipeline_tests.support.session_rows import assert_ended, session_ids_of, session_row


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    return three_active_one_inactive(engine)


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


ALIVE = Owner.current()
REUSED_PID = replace(ALIVE, started="2001-01-01T00:00:00.000+00:00")  # this pid, another process
EXITED = replace(ALIVE, pid=_exited_pid())
ELSEWHERE = Owner("another-host", 4242, "2026-03-18T01:00:00.000+00:00", "boot/pid:[1]")


def _run(
    instance: dg.DagsterInstance,
    owner: Owner,
    beat: datetime,
    job: str = "daily_aggregation_job",
    **tags: str,
) -> dg.DagsterRun:
    return create_run_for_test(
        instance,
        job_name=job,
        status=dg.DagsterRunStatus.STARTED,
        tags={**owner_tags(owner, beat.isoformat(timespec="seconds")), **tags},
    )


def _status(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRunStatus:
    found = instance.get_run_by_id(run.run_id)
    assert found is not None
    return found.status


def test_a_dead_owner_on_this_host_is_told_from_a_live_one_at_once(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    now = datetime.now(UTC)
    live = _run(dagster_instance, ALIVE, now)
    reused = _run(dagster_instance, REUSED_PID, now)
    exited = _run(dagster_instance, EXITED, now)
    launched = create_run_for_test(
        dagster_instance, status=dg.DagsterRunStatus.STARTED
    )  # no owner: Dagster's
    storage = dagster_instance.event_log_storage
    storage.set_concurrency_slots(APP_DB_POOL, 4)
    for run in (live, reused, exited):
        assert storage.claim_concurrency_slot(APP_DB_POOL, run.run_id, "step").is_claimed

    done = dead_runs.heal(dagster_instance, data, now)

    assert len(done) == 2, done
    assert all("1 app_db slot(s) freed" in line and "is gone" in line for line in done), done
    assert _status(dagster_instance, live) == dg.DagsterRunStatus.STARTED
    assert _status(dagster_instance, launched) == dg.DagsterRunStatus.STARTED
    for run in (reused, exited):
        assert _status(dagster_instance, run) == dg.DagsterRunStatus.FAILURE
        [event] = dagster_instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "marked failed by the dead-run check" in event.message
    assert [s.run_id for s in storage.get_concurrency_info(APP_DB_POOL).claimed_slots] == [live.run_id]
    assert dead_runs.heal(dagster_instance, data, now) == []  # healing twice changes nothing


def test_an_owner_on_another_host_is_dead_after_its_heartbeat_times_out(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    beat = datetime.now(UTC)
    run = _run(dagster_instance, ELSEWHERE, beat)
    soon = beat + dead_runs.HEARTBEAT_TIMEOUT - timedelta(seconds=1)
    assert dead_runs.heal(dagster_instance, data, soon) == []  # a slow process is not a dead one
    later = beat + dead_runs.HEARTBEAT_TIMEOUT + timedelta(seconds=30)
    [done] = dead_runs.heal(dagster_instance, data, later)
    assert "pid 4242 on another-host" in done and "has sent no heartbeat for 330 s" in done, done
    assert _status(dagster_instance, run) == dg.DagsterRunStatus.FAILURE


def test_a_dead_session_step_ends_its_session_failed_with_the_reason(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    now = datetime.now(UTC)
    run = _run(dagster_instance, EXITED, now, job=aggregation_session_job.name, **{EXECUTION_TAG: "manual:x"})
    with data.begin() as conn:
        session_id = sessions.open_session(
            conn, sync_type=SyncType.MANUAL, details={"execution": "manual:x", "session_run_id": run.run_id}
        )
    done = dead_runs.heal(dagster_instance, data, now)
    assert len(done) == 2 and "ended failed" in done[1], done
    records = assert_ended(data, session_id, "failed", total=ACTIVE)
    assert records[0]["error_message"].startswith(
        f"session step run {run.run_id[:8]} ended FAILURE: sizeagg: "
    )
    assert f"pid {EXITED.pid} on {EXITED.host}" in records[0]["error_message"]


def test_an_execution_whose_process_died_before_its_session_gets_one(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """Killed between two runs (or before the first): nothing is STARTED, but no session either."""
    now = datetime.now(UTC)
    with data.begin() as conn:
        sessions.register_execution(conn, "manual:2026-03-18:dead0001", EXITED.dump())
        sessions.register_execution(conn, "manual:2026-03-18:live0001", ALIVE.dump())
    [done] = dead_runs.heal(dagster_instance, data, now)
    assert done.startswith("manual:2026-03-18:dead0001: session "), done
    [session_id] = session_ids_of(data, "manual:2026-03-18:dead0001")
    records = assert_ended(data, session_id, "failed", total=ACTIVE)
    message = records[0]["error_message"]
    assert message.startswith("aggregation failed: sizeagg run ended early, its process (pid "), message
    assert "no daily run in this execution" in message and "no quarterly run" in message, message
    assert session_row(data, session_id)["sync_type"] == "manual_task"
    assert session_ids_of(data, "manual:2026-03-18:live0001") == []  # still running: left alone
    assert dead_runs.heal(dagster_instance, data, now) == []


def test_the_healer_sensor_runs_by_default(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    run = _run(dagster_instance, EXITED, datetime.now(UTC))
    assert dead_runs.dead_run_healer.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.build_sensor_context(
        instance=dagster_instance, resources={"db": AppDatabase(url=app_url)}
    ) as context:
        result = dead_runs.dead_run_healer.evaluate_tick(context)
    assert (result.skip_message or "").startswith("healed 1: run "), result.skip_message
    assert _status(dagster_instance, run) == dg.DagsterRunStatus.FAILURE
