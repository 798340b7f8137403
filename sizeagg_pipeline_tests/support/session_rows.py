"""Reading and checking sync_sessions / sync_instance_records rows, and running an execution in process."""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import QUIET
from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.periods import Period, windows_for_date
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.aggregates.jobs import PERIOD_JOBS
from sizeagg_pipeline.defs.sessions.asset import aggregation_session, aggregation_session_job
from sizeagg_pipeline.defs.sessions.closer import end_session
from sizeagg_pipeline.defs.sessions.executions import Execution

SESSIONS = schema.sync_sessions
RECORDS = schema.sync_instance_records
SESSION_ASSET = aggregation_session.key.to_user_string()
PERIOD_JOB_NAMES = {job.name: period for period, job in PERIOD_JOBS.items()}


def session_ids_of(engine: sa.Engine, execution_id: str) -> list[str]:
    """Every session whose records name `execution_id` (the contract allows exactly one)."""
    marker = f'%"execution": "{execution_id}"%'
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(RECORDS.c.session_id)
                .where(sa.cast(RECORDS.c.sync_details, sa.Text).like(marker))
                .distinct()
            ).scalars()
        )


def session_row(engine: sa.Engine, session_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(SESSIONS).where(SESSIONS.c.session_id == session_id)).mappings().one()
        )


def record_rows(engine: sa.Engine, session_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(RECORDS).where(RECORDS.c.session_id == session_id).order_by(RECORDS.c.instance_id)
        ).mappings()
        return [dict(r) for r in rows]


def records_by_instance(engine: sa.Engine, session_id: str) -> dict[int, dict[str, Any]]:
    """The session's records, by instance id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RECORDS).where(RECORDS.c.session_id == session_id)).mappings()
        return {r["instance_id"]: dict(r) for r in rows}


def session_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(SESSIONS)).scalar_one()


def all_session_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(SESSIONS).order_by(SESSIONS.c.id)).mappings()]


def assert_ended(
    engine: sa.Engine, session_id: str, status: str, *, total: int, message: str | None = None
) -> list[dict[str, Any]]:
    """The session and its records are terminal, with exact counts; returns the records."""
    session = session_row(engine, session_id)
    records = record_rows(engine, session_id)
    assert session["status"] == status, session
    assert session["completed_at"] is not None
    assert session["total_instances"] == total == len(records)
    completed = sum(r["status"] == "completed" for r in records)
    failed = sum(r["status"] == "failed" for r in records)
    assert completed + failed == total, [r["status"] for r in records]
    assert (session["successful_instances"], session["failed_instances"]) == (completed, failed)
    assert all(r["completed_at"] is not None for r in records)
    if status != "completed":
        assert failed == total
        assert {r["items_synced"] for r in records} == {0}
        if message is not None:
            assert all(message in (r["error_message"] or "") for r in records), records[0]["error_message"]
    return records


def run_period_jobs(
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    partitions: dict[str, str],
) -> dict[str, dg.DagsterRun]:
    """Execute period jobs in process as the daemon would launch them: tagged, one partition each."""
    runs: dict[str, dg.DagsterRun] = {}
    for period, key in partitions.items():
        result = defs.resolve_job_def(PERIOD_JOBS[Period(period)].name).execute_in_process(
            run_config=QUIET, instance=instance, partition_key=key, tags=tags, raise_on_error=False
        )
        runs[period] = result.dagster_run
    return runs


def run_session_job(
    instance: dg.DagsterInstance, tags: dict[str, str], config: dict[str, Any] | None = None
) -> dg.ExecuteInProcessResult:
    run_config = {**QUIET, "ops": {SESSION_ASSET: {"config": config or {}}}}
    return defs.resolve_job_def(aggregation_session_job.name).execute_in_process(
        run_config=run_config, instance=instance, tags=tags, raise_on_error=False
    )


def tick_partitions(day: date) -> dict[str, str]:
    """Partition keys a daily tick for business date `day` materializes, by period."""
    return {str(p): window.key for p, window in windows_for_date(day).items()}


def write_failed_session(engine: sa.Engine, execution: Execution) -> str:
    """What every failure path does: end the execution's session with its outcome."""
    return end_session(engine, execution, execution.outcome()).session_id
