"""defs/sessions/asset.py: the session step ends its session however the step ends.

A database error while it writes the records fails every record; launched by hand
for a date whose partitions never ran, it fails rather than completes; a run of its
execution still in flight is waited for; a PostgreSQL restart while it finalises is
waited out. Terminate and SIGKILL of a real run
worker are in e2e/test_dagster_dev.py.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.periods import Period
from sizeagg_pipeline.defs.aggregates.jobs import PERIOD_JOBS
from sizeagg_pipeline.defs.sessions import asset
from sizeagg_pipeline.defs.sessions.asset import aggregation_session_job
from sizeagg_pipeline.defs.sessions.vocabulary import PARTITION_TAG
from sizeagg_pipeline_tests.support.crashes import RUNNING_SESSIONS, cli_env, count, kill, start_holding
from sizeagg_pipeline_tests.support.dagster_processes import wait_for
from sizeagg_pipeline_tests.support.data import three_active_one_inactive
from sizeagg_pipeline_tests.support.execution import ACTIVE, DAY, EXECUTION, gated_tags, reject_updates
from sizeagg_pipeline_tests.support.postgres import running_server
from sizeagg_pipeline_tests.support.session_rows import (
    all_session_rows,
    assert_ended,
    run_period_jobs,
    run_session_job,
    session_ids_of,
    tick_partitions,
)


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


@pytest.mark.postgres
@pytest.mark.slow
def test_a_postgresql_restart_while_the_step_finalises_still_completes_the_session(tmp_path: Path) -> None:
    """The application database goes away while the step holds its session, and comes back
    while the step retries: the session completes, nothing is left running."""
    with running_server() as server:  # a server of its own: this test restarts it
        url = server.url(server.create_database())
        engine = schema.make_engine(url)
        schema.create_missing(engine)
        three_active_one_inactive(engine)
        home = tmp_path / "dagster_home"
        log = tmp_path / "run.log"
        proc = start_holding(cli_env(url, home), DAY, log, hold_seconds=20)
        try:
            wait_for(lambda: count(engine, RUNNING_SESSIONS) == 1, timeout=240, what="the session to open")
            engine.dispose()
            server.stop()
            with dg.DagsterInstance.from_config(str(home)) as instance:

                def retrying() -> bool:
                    runs = instance.get_runs(dg.RunsFilter(job_name=aggregation_session_job.name))
                    return bool(runs) and any(
                        "the application database is unreachable" in e.message
                        for e in instance.all_logs(runs[0].run_id)
                    )

                wait_for(retrying, timeout=120, what="the step to retry its finalisation")
            server.start(port=server.port)
            proc.wait(timeout=240)
        finally:
            kill([proc])
        output = log.read_text()
        assert proc.returncode == 0, output
        assert "completed: 3 instances, 3 succeeded, 0 failed" in output, output
        [session] = all_session_rows(engine)
        assert_ended(engine, session["session_id"], "completed", total=ACTIVE)
        engine.dispose()


def _unfinished_weekly_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    """A weekly run of the execution that has materialized but not yet ended (its checks still run)."""
    run = dg.DagsterRun(
        job_name=PERIOD_JOBS[Period.WEEKLY].name,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={**gated_tags(), PARTITION_TAG: tick_partitions(DAY)["weekly"]},
    )
    return instance.add_run(run)


def test_the_step_waits_for_the_runs_of_its_execution_to_end(
    data: sa.Engine, dagster_instance: dg.DagsterInstance
) -> None:
    """A backfill launches the step once the partitions are materialized; a run of the
    execution still evaluating its checks is waited for, not judged failed."""
    run_period_jobs(dagster_instance, gated_tags(), tick_partitions(DAY))
    run = _unfinished_weekly_run(dagster_instance)

    def step_waits() -> bool:
        steps = dagster_instance.get_runs(dg.RunsFilter(job_name=aggregation_session_job.name))
        return any(
            f"waiting for weekly run {run.run_id[:8]}" in (record.user_message or "")
            for step in steps
            for record in dagster_instance.all_logs(step.run_id)
        )

    def end_the_run_once_the_step_waits() -> None:
        wait_for(step_waits, timeout=60, what="the session step to wait", interval=0.2)
        dagster_instance.report_dagster_event(
            dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name), run.run_id
        )

    ender = threading.Thread(target=end_the_run_once_the_step_waits)
    ender.start()
    result = run_session_job(dagster_instance, gated_tags())
    ender.join()
    ended = dagster_instance.get_run_by_id(run.run_id)
    assert ended is not None and ended.status == dg.DagsterRunStatus.SUCCESS
    assert result.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    [session_id] = session_ids_of(data, EXECUTION)
    assert_ended(data, session_id, "completed", total=ACTIVE)


def test_a_run_that_never_ends_fails_the_session_after_the_patience(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asset, "RUNS_PATIENCE", timedelta(seconds=1))
    run_period_jobs(dagster_instance, gated_tags(), tick_partitions(DAY))
    run = _unfinished_weekly_run(dagster_instance)
    result = run_session_job(dagster_instance, gated_tags())
    assert result.dagster_run.status == dg.DagsterRunStatus.FAILURE
    [session_id] = session_ids_of(data, EXECUTION)
    assert_ended(
        data, session_id, "failed", total=ACTIVE, message=f"(run {run.run_id[:8]}) had not finished (STARTED)"
    )
