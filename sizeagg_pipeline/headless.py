"""A daily tick without the daemon: what `sizeagg run --date D` does, in process.

The runs go to the Dagster instance of DAGSTER_HOME, so they show in the UI
afterwards exactly like runs the daemon launched.
"""

from __future__ import annotations

import uuid
from datetime import date

import dagster as dg

from . import executions
from .core import sessions
from .core.periods import PERIODS, windows_for_date
from .core.schema import make_engine
from .core.settings import database_url

# Runs log to the Dagster instance (the UI shows them); the terminal gets errors only.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def execution_tags(execution_id: str, day: date, sync_type: str) -> dict[str, str]:
    return {
        executions.EXECUTION_TAG: execution_id,
        executions.DATE_TAG: day.isoformat(),
        executions.SYNC_TYPE_TAG: sync_type,
    }


def run_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    day: date,
    sync_type: str = sessions.MANUAL,
) -> sessions.SessionSummary:
    """Materialize the four partitions containing `day`, then write the session."""
    execution_id = (
        f"{'scheduled' if sync_type == sessions.SCHEDULED else 'manual'}:{day}:{uuid.uuid4().hex[:8]}"
    )
    tags = execution_tags(execution_id, day, sync_type)
    windows = windows_for_date(day)
    for period in PERIODS:
        job = defs.resolve_job_def(f"{period}_aggregation_job")
        job.execute_in_process(
            run_config=QUIET,
            instance=instance,
            partition_key=windows[period].key,
            tags=tags,
            raise_on_error=False,
        )
    engine = make_engine(database_url())
    try:
        execution = executions.Execution(
            id=execution_id,
            sync_type=sync_type,
            runs=executions.period_runs(instance, {executions.EXECUTION_TAG: execution_id}),
        )
        session_id = None
        if execution.ok:
            result = defs.resolve_job_def("aggregation_session_job").execute_in_process(
                run_config=QUIET, instance=instance, tags=tags, raise_on_error=False
            )
            for event in result.get_asset_materialization_events():
                session_id = str(event.materialization.metadata["session_id"].value)
        else:
            session_id = executions.write_failed_session(engine, execution)
        with engine.connect() as conn:
            # A session step that failed opened its session before it failed.
            session_id = session_id or sessions.session_for_execution(conn, execution_id)
            if session_id is None:
                raise RuntimeError(f"execution {execution_id} left no session")
            return sessions.get_session(conn, session_id)
    finally:
        engine.dispose()
