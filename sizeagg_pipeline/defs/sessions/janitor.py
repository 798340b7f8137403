"""The janitor: no session stays `running` once nothing can end it any more.

It reconciles `sync_sessions` with Dagster: a session still running whose run
finished, no longer exists, or has run longer than the maximum runtime is ended
failed with the reason. It covers what the run-status sensors cannot see
(history before their first tick, a host lost with its code server).
"""

from datetime import datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.sessions import Outcome, SyncType
from ...core.settings import as_utc, operations, utc_now
from .. import automation
from ..resources import AppDatabase
from .closer import end_session
from .executions import Execution, session_run_outcome


def sweep(
    instance: dg.DagsterInstance, engine: sa.Engine, now: datetime, max_runtime: timedelta
) -> list[str]:
    """End every `running` session whose run is finished, missing or too old."""
    with engine.connect() as conn:
        running = sessions.running_sessions(conn)
    done = []
    for running_session in running:
        summary, run_id = running_session.summary, running_session.session_run_id
        age = now - as_utc(summary.started_at) if summary.started_at else max_runtime * 2
        run = instance.get_run_by_id(run_id) if run_id else None
        if run_id and run is None:
            outcome = Outcome.failed(f"janitor: its Dagster run {run_id} no longer exists")
        elif run is not None and run.is_finished:
            why = session_run_outcome(instance, run)
            outcome = Outcome(why.status, f"janitor: {why.reason}")
        elif age > max_runtime:
            where = (
                f"its Dagster run {run_id[:8]} is still {run.status.value}"
                if run_id and run
                else "it has no run"
            )
            outcome = Outcome.failed(
                f"janitor: {where} after {int(age.total_seconds())} s, more than the maximum "
                f"runtime of {int(max_runtime.total_seconds())} s (lost worker or host)"
            )
        else:
            continue
        execution = Execution(running_session.execution_id or "", SyncType(summary.sync_type), runs=())
        ended = end_session(engine, execution, outcome, session_id=summary.session_id)
        if ended.changed:
            done.append(f"{summary.session_id} {outcome.status}: {outcome.reason}")
    return done


@automation.sensor(
    "session_janitor",
    operations().janitor_interval,
    "Reconciles sync_sessions with Dagster: a session still running whose run finished, "
    "no longer exists, or has run longer than SIZEAGG_SESSION_MAX_RUNTIME_SECONDS is "
    "finalised failed with the reason. Covers what the run-status sensors cannot see "
    "(history before their first tick, a host lost with its code server).",
)
def session_janitor(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SkipReason:
    done = sweep(context.instance, db.engine, utc_now(), timedelta(seconds=operations().session_max_runtime))
    return dg.SkipReason(f"finalised {len(done)}: " + "; ".join(done) if done else "no stale session")
