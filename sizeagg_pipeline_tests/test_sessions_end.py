"""Issue 3: every way an execution can end leaves a terminal session with exact counts.

In process, against a real application database and a real Dagster instance. The
paths that need real processes (terminate via GraphQL, SIGKILL of the run worker,
a backfill whose upstream partition fails) are in test_e2e.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from sizeagg_pipeline import defs, executions, sensors
from sizeagg_pipeline.core import aggregation, schema, sessions
from sizeagg_pipeline.core.aggregation import LEVELS
from sizeagg_pipeline.core.periods import PERIODS, windows_for_date
from sizeagg_pipeline.resources import AppDatabase

from .conftest import add_instances, fill_days, slice_rows
from .session_rows import (
    all_session_rows,
    assert_ended,
    record_rows,
    run_period_jobs,
    run_session_job,
    session_ids_of,
    session_row,
    tick_partitions,
)

DAY = date(2026, 3, 18)  # a Wednesday
EXECUTION = f"scheduled:{DAY}"
ACTIVE = 3
STALE_AFTER = timedelta(hours=2)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 active, 4 inactive; two databases each, every day since 2026-02-20."""
    with engine.begin() as conn:
        ids = add_instances(conn, 4, inactive=(4,))
        fill_days(conn, ids, date(2026, 2, 20), DAY, databases=2)
    return engine


def gated_tags(execution_id: str = EXECUTION, day: date = DAY) -> dict[str, str]:
    return executions.execution_tags(execution_id, sessions.SCHEDULED, trigger="tick", day=day)


def gate(instance: dg.DagsterInstance, engine: sa.Engine, cursor: str | None = None) -> dg.SensorResult:
    return sensors.gate_tick(instance, engine, cursor, datetime.now(UTC), STALE_AFTER)


def reject_updates(
    engine: sa.Engine, table: str, message: str, *, when: str | None = None, event: str = "UPDATE"
) -> None:
    """Make the database refuse writes to `table` matching `when` (a real database error, not a mock)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            condition = f"WHEN {when}" if when else ""
            conn.exec_driver_sql(
                f"CREATE TRIGGER sizeagg_test_reject BEFORE {event} ON {table} FOR EACH ROW {condition} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION sizeagg_test_reject() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF {when or 'TRUE'} THEN RAISE EXCEPTION '{message}'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER sizeagg_test_reject BEFORE {event} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION sizeagg_test_reject()"
            )


def allow_updates(engine: sa.Engine, table: str) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER sizeagg_test_reject")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER sizeagg_test_reject ON {table}")
            conn.exec_driver_sql("DROP FUNCTION sizeagg_test_reject()")


# --------------------------------------------------------------------------- gate


def test_gate_waits_for_all_four_then_launches_the_session_step(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    partitions = tick_partitions(DAY)
    quarterly = partitions.pop("quarterly")
    run_period_jobs(dagster_instance, gated_tags(), partitions)
    waiting = gate(dagster_instance, data)
    assert not waiting.run_requests
    assert EXECUTION in json.loads(waiting.cursor)["pending"]
    assert session_ids_of(data, EXECUTION) == []

    run_period_jobs(dagster_instance, gated_tags(), {"quarterly": quarterly})
    ready = gate(dagster_instance, data, waiting.cursor)
    [request] = ready.run_requests
    assert request.run_key == f"session:{EXECUTION}"
    assert request.tags[executions.EXECUTION_TAG] == EXECUTION
    assert request.tags[executions.SYNC_TYPE_TAG] == "scheduled_task"
    # a re-evaluation asks for the same run key: the daemon launches it once
    assert [r.run_key for r in gate(dagster_instance, data, waiting.cursor).run_requests] == [request.run_key]

    result = run_session_job(dagster_instance, dict(request.tags))
    assert result.success
    [session_id] = session_ids_of(data, EXECUTION)
    records = assert_ended(data, session_id, "completed", total=ACTIVE)
    assert session_row(data, session_id)["sync_type"] == "scheduled_task"
    assert [r["items_synced"] for r in records] == [12, 12, 12]  # (2 database + 1 instance rows) x 4
    assert len(records[0]["sync_details"]["dagster_run_ids"]) == 4

    closed = gate(dagster_instance, data, ready.cursor)
    assert not closed.run_requests and json.loads(closed.cursor)["pending"] == {}
    assert session_ids_of(data, EXECUTION) == [session_id]


def test_upstream_exception_writes_one_failed_session(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    # A negative size on 2026-03-02 is read by March and Q1, not by DAY's day or week.
    with data.begin() as conn:
        conn.execute(
            sa.update(schema.database_size_stats)
            .where(
                schema.database_size_stats.c.instance_id == 2,
                schema.database_size_stats.c.database_name == "db1",
                schema.database_size_stats.c.collected_date == date(2026, 3, 2),
            )
            .values(size_mb=-5)
        )
    runs = run_period_jobs(dagster_instance, gated_tags(), tick_partitions(DAY))
    assert {p: r.status for p, r in runs.items()} == {
        "daily": dg.DagsterRunStatus.SUCCESS,
        "weekly": dg.DagsterRunStatus.SUCCESS,
        "monthly": dg.DagsterRunStatus.FAILURE,
        "quarterly": dg.DagsterRunStatus.FAILURE,
    }
    first = gate(dagster_instance, data)
    assert not first.run_requests  # the session step never runs
    [session_id] = session_ids_of(data, EXECUTION)
    records = assert_ended(data, session_id, "failed", total=ACTIVE)
    message = records[0]["error_message"]
    assert message.startswith("aggregation failed: ")
    assert "monthly partition 2026-03-01" in message and "quarterly partition 2026-01-01" in message
    assert "negative size_mb" in message and "instance 2" in message and "2026-03-02" in message
    assert "daily" not in message and "weekly" not in message
    assert session_row(data, session_id)["sync_type"] == "scheduled_task"
    before = (session_row(data, session_id), record_rows(data, session_id))

    # the gate again, and a gate that lost its cursor: still exactly one session, unchanged
    assert not gate(dagster_instance, data, first.cursor).run_requests
    assert not gate(dagster_instance, data, None).run_requests
    assert session_ids_of(data, EXECUTION) == [session_id]
    assert (session_row(data, session_id), record_rows(data, session_id)) == before
    assert dagster_instance.get_runs(dg.RunsFilter(job_name=executions.SESSION_JOB)) == []


def test_cancelled_period_run_fails_the_session(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    partitions = tick_partitions(DAY)
    quarterly = partitions.pop("quarterly")
    run_period_jobs(dagster_instance, gated_tags(), partitions)
    cancelled = create_run_for_test(
        dagster_instance,
        job_name="quarterly_aggregation_job",
        status=dg.DagsterRunStatus.CANCELED,
        tags={**gated_tags(), "dagster/partition": quarterly},
    )
    assert not gate(dagster_instance, data).run_requests
    [session_id] = session_ids_of(data, EXECUTION)
    assert_ended(
        data,
        session_id,
        "failed",
        total=ACTIVE,
        message=(
            f"quarterly partition 2026-01-01 (run {cancelled.run_id[:8]}) was cancelled: cancelled by user"
        ),
    )


def test_gate_gives_up_on_an_execution_that_never_completes(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """A period run was never launched (or hangs): after the max runtime the execution ends failed."""
    partitions = tick_partitions(DAY)
    quarterly = partitions.pop("quarterly")
    run_period_jobs(dagster_instance, gated_tags(), partitions)
    now = datetime.now(UTC)
    waiting = sensors.gate_tick(dagster_instance, data, None, now, STALE_AFTER)
    assert not waiting.run_requests and session_ids_of(data, EXECUTION) == []
    later = now + STALE_AFTER + timedelta(seconds=1)
    gave_up = sensors.gate_tick(dagster_instance, data, waiting.cursor, later, STALE_AFTER)
    assert not gave_up.run_requests and json.loads(gave_up.cursor)["pending"] == {}
    [session_id] = session_ids_of(data, EXECUTION)
    assert_ended(data, session_id, "failed", total=ACTIVE, message="3 of 4 period runs launched")

    # the missing run turns up and succeeds after all: still no second session
    run_period_jobs(dagster_instance, gated_tags(), {"quarterly": quarterly})
    assert not gate(dagster_instance, data, gave_up.cursor).run_requests
    assert session_ids_of(data, EXECUTION) == [session_id]


# --------------------------------------------------------------------------- session step


def test_database_error_in_session_step_fails_every_record(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    run_period_jobs(dagster_instance, gated_tags(), tick_partitions(DAY))
    reject_updates(
        data,
        "sync_instance_records",
        "simulated disk failure writing records",
        when="NEW.status = 'completed'",
    )
    result = run_session_job(dagster_instance, gated_tags())
    assert result.dagster_run.status == dg.DagsterRunStatus.FAILURE
    [session_id] = session_ids_of(data, EXECUTION)
    records = assert_ended(
        data, session_id, "failed", total=ACTIVE, message="simulated disk failure writing records"
    )
    assert records[0]["error_message"].startswith("session step failed: ")
    assert records[0]["sync_details"]["session_run_id"] == result.dagster_run.run_id


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
        sensors.aggregation_session_failed(context.for_run_failure())
    records = assert_ended(data, session_id, "failed", total=ACTIVE)
    message = records[0]["error_message"]
    assert message.startswith(f"session step run {result.dagster_run.run_id[:8]} ended FAILURE")
    assert "simulated lost connection" in message


def test_session_step_that_failed_before_opening_gets_its_session_from_the_gate(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """The database refused the session itself: the gate still writes the execution's one session."""
    run_period_jobs(dagster_instance, gated_tags(), tick_partitions(DAY))
    launched = gate(dagster_instance, data)
    [request] = launched.run_requests
    reject_updates(data, "sync_sessions", "simulated database outage", event="INSERT")
    result = run_session_job(dagster_instance, dict(request.tags))
    assert result.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert session_ids_of(data, EXECUTION) == []
    allow_updates(data, "sync_sessions")

    closed = gate(dagster_instance, data, launched.cursor)
    assert not closed.run_requests and json.loads(closed.cursor)["pending"] == {}
    [session_id] = session_ids_of(data, EXECUTION)
    records = assert_ended(data, session_id, "failed", total=ACTIVE, message="simulated database outage")
    assert records[0]["error_message"].startswith(
        f"session step run {result.dagster_run.run_id[:8]} ended FAILURE: "
    )


def test_terminated_session_run_is_cancelled_by_the_status_sensor(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    """Terminate reached a step that never handled it: the CANCELED sensor ends the session."""
    run = create_run_for_test(
        dagster_instance,
        job_name=executions.SESSION_JOB,
        status=dg.DagsterRunStatus.STARTED,
        tags=gated_tags(),
    )
    with data.begin() as conn:
        session_id = sessions.open_session(
            conn,
            sync_type=sessions.SCHEDULED,
            details={"execution": EXECUTION, "session_run_id": run.run_id},
        )
    dagster_instance.report_run_canceled(run)
    [event] = dagster_instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_CANCELED)
    with dg.build_run_status_sensor_context(
        sensor_name="aggregation_session_cancelled",
        dagster_instance=dagster_instance,
        dagster_run=dagster_instance.get_run_by_id(run.run_id),
        dagster_event=event.dagster_event,
        resources={"db": AppDatabase(url=app_url)},
    ) as context:
        sensors.aggregation_session_cancelled(context)
    records = assert_ended(data, session_id, "cancelled", total=ACTIVE, message="cancelled by user")
    assert records[0]["error_message"] == (
        f"session step run {run.run_id[:8]} was terminated: cancelled by user"
    )


# --------------------------------------------------------------------------- janitor


def _open_for_run(engine: sa.Engine, run_id: str) -> str:
    with engine.begin() as conn:
        return sessions.open_session(
            conn, sync_type=sessions.SCHEDULED, details={"execution": f"x:{run_id}", "session_run_id": run_id}
        )


def test_janitor_finalises_stale_sessions_once(data: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    now = datetime.now(UTC)
    gone = _open_for_run(data, "2b1e7a6c-0000-4000-8000-000000000000")  # its run no longer exists
    failed_run = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.FAILURE)
    finished = _open_for_run(data, failed_run.run_id)
    live_run = create_run_for_test(dagster_instance, status=dg.DagsterRunStatus.STARTED)
    alive = _open_for_run(data, live_run.run_id)

    done = sensors.sweep(dagster_instance, data, now, STALE_AFTER)
    assert len(done) == 2
    assert_ended(data, gone, "failed", total=ACTIVE, message="no longer exists")
    assert_ended(data, finished, "failed", total=ACTIVE, message=f"{failed_run.run_id[:8]} ended FAILURE")
    assert session_row(data, alive)["status"] == "running"  # its run may still finish it

    # the host is lost: nothing ends that run, and it is now older than the max runtime
    later = now + STALE_AFTER + timedelta(minutes=1)
    assert len(sensors.sweep(dagster_instance, data, later, STALE_AFTER)) == 1
    assert_ended(data, alive, "failed", total=ACTIVE, message="lost worker or host")

    snapshot = (all_session_rows(data), [record_rows(data, s) for s in (gone, finished, alive)])
    assert sensors.sweep(dagster_instance, data, later, STALE_AFTER) == []  # the janitor twice
    assert (all_session_rows(data), [record_rows(data, s) for s in (gone, finished, alive)]) == snapshot


def test_janitor_sensor_runs_by_default(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, app_url: str
) -> None:
    gone = _open_for_run(data, "7c0ffee0-0000-4000-8000-000000000000")
    with dg.build_sensor_context(
        instance=dagster_instance, resources={"db": AppDatabase(url=app_url)}
    ) as context:
        result = sensors.session_janitor.evaluate_tick(context)
    assert "finalised 1" in (result.skip_message or "")
    assert_ended(data, gone, "failed", total=ACTIVE, message="no longer exists")
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)


# --------------------------------------------------------------------------- no double counting


def test_racing_failure_writers_write_one_session(data: sa.Engine) -> None:
    execution = executions.Execution(
        id="scheduled:race", sync_type=sessions.SCHEDULED, runs=[], missing=["no daily run in this execution"]
    )
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def writer() -> None:
        barrier.wait()
        ids.append(executions.write_failed_session(data, execution))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 4
    assert session_ids_of(data, "scheduled:race") == ids[:1]
    assert_ended(data, ids[0], "failed", total=ACTIVE, message="no daily run in this execution")


# --------------------------------------------------------------------------- concurrency

_TICK = """
import sys
from datetime import date
import dagster as dg
from sizeagg_pipeline import defs
from sizeagg_pipeline.headless import run_tick
with dg.DagsterInstance.get() as instance:
    summary = run_tick(defs, instance, date.fromisoformat(sys.argv[1]), sys.argv[2], {"hold_seconds": 2})
print(summary.session_id)
"""


@pytest.mark.slow
def test_concurrent_executions_of_one_date(
    data: sa.Engine, app_url: str, tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    """A scheduled and a manual execution of the same date, in two processes at once."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"), "SIZEAGG_DATABASE_URL": app_url}
    Path(env["DAGSTER_HOME"]).mkdir(exist_ok=True)
    procs = {
        sync_type: subprocess.Popen(
            [sys.executable, "-c", _TICK, DAY.isoformat(), sync_type],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for sync_type in (sessions.SCHEDULED, sessions.MANUAL)
    }
    ids = {}
    for sync_type, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        ids[sync_type] = out.strip().splitlines()[-1]
    assert ids[sessions.SCHEDULED] != ids[sessions.MANUAL]
    sessions_rows = all_session_rows(data)
    assert len(sessions_rows) == 2
    for sync_type, session_id in ids.items():
        records = assert_ended(data, session_id, "completed", total=ACTIVE)
        assert session_row(data, session_id)["sync_type"] == sync_type
        assert [r["items_synced"] for r in records] == [12, 12, 12]
    # the two sessions were open at the same time
    a, b = sessions_rows
    assert a["started_at"] < b["completed_at"] and b["started_at"] < a["completed_at"]

    # the aggregate tables are exactly what one clean write computes
    windows = windows_for_date(DAY)
    with data.connect() as conn:
        before = {
            (lvl.name, p): slice_rows(conn, lvl.target, p.value, windows[p].start)
            for lvl in LEVELS
            for p in PERIODS
        }
    for level in LEVELS:
        for period in PERIODS:
            aggregation.aggregate(data, level, [windows[period]])
    with data.connect() as conn:
        after = {
            (lvl.name, p): slice_rows(conn, lvl.target, p.value, windows[p].start)
            for lvl in LEVELS
            for p in PERIODS
        }
    assert after == before
    assert len(before[("database", PERIODS[0])]) == 8  # 4 instances x 2 databases, inactive one too


def test_standalone_session_run_still_needs_the_partitions(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """A session step launched by hand for a date whose partitions never ran: failed, not completed."""
    result = run_session_job(dagster_instance, {}, {"date": DAY.isoformat()})
    assert result.dagster_run.status == dg.DagsterRunStatus.FAILURE
    [session_id] = session_ids_of(data, f"run:{result.dagster_run.run_id}")
    assert_ended(
        data, session_id, "failed", total=ACTIVE, message="daily partition 2026-03-18 was never materialized"
    )
