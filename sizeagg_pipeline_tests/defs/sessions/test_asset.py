"""defs/sessions/asset.py: the session step ends its session however the step ends.

A database error while it writes the records fails every record; launched by hand
for a date whose partitions never ran, it fails rather than completes; a PostgreSQL
restart while it finalises is waited out. Terminate and SIGKILL of a real run
worker are in e2e/test_dagster_dev.py.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.defs.sessions.asset import aggregation_session_job
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
