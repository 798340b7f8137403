"""defs/sessions/gate.py: the gate launches an execution's session step once all four period runs
succeeded, and otherwise ends the execution with exactly one failed session.

In process, against a real application database and a real Dagster instance
(`support/execution.py`: one scheduled execution of DAY). A backfill whose upstream
partition fails is in e2e/test_dagster_dev.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.defs.sessions import vocabulary
from sizeagg_pipeline.defs.sessions.asset import aggregation_session_job
from sizeagg_pipeline.defs.sessions.gate import gate_tick
from sizeagg_pipeline_tests.support.execution import (
    ACTIVE,
    DAY,
    EXECUTION,
    STALE_AFTER,
    allow_updates,
    gate,
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
    assert request.tags[vocabulary.EXECUTION_TAG] == EXECUTION
    assert vocabulary.sync_type_of(request.tags) == "scheduled_task"
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
    assert dagster_instance.get_runs(dg.RunsFilter(job_name=aggregation_session_job.name)) == []


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
    waiting = gate_tick(dagster_instance, data, None, now, STALE_AFTER)
    assert not waiting.run_requests and session_ids_of(data, EXECUTION) == []
    later = now + STALE_AFTER + timedelta(seconds=1)
    gave_up = gate_tick(dagster_instance, data, waiting.cursor, later, STALE_AFTER)
    assert gave_up.cursor is not None
    assert not gave_up.run_requests and json.loads(gave_up.cursor)["pending"] == {}
    [session_id] = session_ids_of(data, EXECUTION)
    assert_ended(data, session_id, "failed", total=ACTIVE, message="3 of 4 period runs launched")

    # the missing run turns up and succeeds after all: still no second session
    run_period_jobs(dagster_instance, gated_tags(), {"quarterly": quarterly})
    assert not gate(dagster_instance, data, gave_up.cursor).run_requests
    assert session_ids_of(data, EXECUTION) == [session_id]


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
