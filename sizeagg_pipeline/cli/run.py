"""An execution without the daemon: what `sizeagg run --date D` does, in process.

The four period runs go to the Dagster instance of DAGSTER_HOME, so they show in
the UI afterwards exactly like runs the daemon launched. Then the gate's own
decision (`defs/sessions/gate.py`) says what happens next: the session step runs
here, in process, or the execution's failed session has already been written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import dagster as dg

from ..core import sessions
from ..core.periods import windows_for_date
from ..core.schema import make_engine
from ..core.sessions import SessionSummary, SyncType
from ..core.settings import database_url, utc_now
from ..defs.aggregates.jobs import PERIOD_JOBS
from ..defs.sessions.asset import aggregation_session, aggregation_session_job
from ..defs.sessions.gate import decide
from ..defs.sessions.vocabulary import ExecutionId, Trigger, execution_tags

# Runs log to the Dagster instance (the UI shows them); the terminal gets errors only.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    day: date,
    sync_type: SyncType = SyncType.MANUAL,
    session_config: Mapping[str, Any] | None = None,
) -> SessionSummary:
    """Materialize the four partitions containing `day`, then end the execution with its session.

    `session_config` is the session step's config (e.g. `hold_seconds` in tests).
    """
    execution_id = ExecutionId.cli(day, sync_type)
    tags = execution_tags(execution_id, trigger=Trigger.CLI)
    for period, window in windows_for_date(day).items():
        defs.resolve_job_def(PERIOD_JOBS[period].name).execute_in_process(
            run_config=QUIET, instance=instance, partition_key=window.key, tags=tags, raise_on_error=False
        )
    engine = make_engine(database_url())
    try:
        now = utc_now()
        decision = decide(instance, engine, execution_id, now, now, stale_after=timedelta(0))
        if decision.request is not None:
            run_config = {
                **QUIET,
                "ops": {aggregation_session.op.name: {"config": dict(session_config or {})}},
            }
            defs.resolve_job_def(aggregation_session_job.name).execute_in_process(
                run_config=run_config,
                instance=instance,
                tags=dict(decision.request.tags),
                raise_on_error=False,
            )
        with engine.connect() as conn:
            # A session step that failed opened its session before it failed.
            session_id = sessions.session_for_execution(conn, execution_id)
            if session_id is None:
                raise RuntimeError(f"execution {execution_id} left no session: {decision.message}")
            return sessions.get_session(conn, session_id)
    finally:
        engine.dispose()
