"""defs/sessions/asset.py: the session step ends its session however the step ends.

A database error while it writes the records fails every record; launched by hand
for a date whose partitions never ran, it fails rather than completes. Terminate
and SIGKILL of a real run worker are in e2e/test_dagster_dev.py.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline_tests.support.execution import ACTIVE, DAY, EXECUTION, gated_tags, reject_updates
from sizeagg_pipeline_tests.support.session_rows import (
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
