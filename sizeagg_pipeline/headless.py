"""A daily tick without the daemon: what `sizeagg run --date D` does, in process.

The runs go to the Dagster instance of DAGSTER_HOME, so they show in the UI
afterwards exactly like runs the daemon launched.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

import dagster as dg

from . import executions
from .core import sessions
from .core.periods import PERIODS, windows_for_date
from .core.schema import make_engine
from .core.settings import database_url

# Runs log to the Dagster instance (the UI shows them); the terminal gets errors only.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    day: date,
    sync_type: str = sessions.MANUAL,
    session_config: Mapping[str, Any] | None = None,
) -> sessions.SessionSummary:
    """Materialize the four partitions containing `day`, then write the session.

    `session_config` is the session step's config (e.g. `hold_seconds` in tests).
    """
    execution_id = (
        f"{'scheduled' if sync_type == sessions.SCHEDULED else 'manual'}:{day}:{uuid.uuid4().hex[:8]}"
    )
    tags = executions.execution_tags(execution_id, sync_type, trigger="cli", day=day)
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
            run_config = {**QUIET, "ops": {"aggregation_session": {"config": dict(session_config or {})}}}
            result = defs.resolve_job_def("aggregation_session_job").execute_in_process(
                run_config=run_config, instance=instance, tags=tags, raise_on_error=False
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
