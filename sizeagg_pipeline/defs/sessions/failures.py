"""A session-step run that failed or was terminated leaves no session running.

The step's own `except BaseException` ends its session in every case it can see;
these two run-status sensors cover the rest (a SIGKILLed worker, which the code
server marks failed; a termination the step never got to handle).
"""

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.settings import operations
from .. import automation
from ..resources import AppDatabase
from .asset import SessionConfig, aggregation_session, aggregation_session_job
from .closer import end_session
from .executions import execution_of_session_run, session_run_outcome


def _session_config(run: dg.DagsterRun) -> SessionConfig:
    ops = run.run_config.get("ops", {}) if isinstance(run.run_config, dict) else {}
    return SessionConfig(**ops.get(aggregation_session.op.name, {}).get("config", {}))


def close_session_of_run(instance: dg.DagsterInstance, engine: sa.Engine, run: dg.DagsterRun) -> str:
    """End the session of a session-step run that died: finalise it, or write it if never opened."""
    outcome = session_run_outcome(instance, run)
    execution = execution_of_session_run(instance, run, _session_config(run).day())
    with engine.connect() as conn:  # the session this run opened, if it got that far
        opened = sessions.session_for_run(conn, run.run_id)
    ended = end_session(engine, execution, outcome, session_id=opened)
    return f"{ended} of {execution.id} ended {outcome.status}" if ended.changed else str(ended)


def _session_run_sensor(name: str, status: dg.DagsterRunStatus, description: str) -> dg.SensorDefinition:
    @automation.run_status_sensor(
        name, status, [aggregation_session_job], operations().sensor_interval, description
    )
    def _sensor(context: dg.RunStatusSensorContext, db: AppDatabase) -> dg.SkipReason:
        return dg.SkipReason(close_session_of_run(context.instance, db.engine, context.dagster_run))

    return _sensor


aggregation_session_failed = _session_run_sensor(
    "aggregation_session_failed",
    dg.DagsterRunStatus.FAILURE,
    "A session-step run that failed (a SIGKILLed worker is marked failed by the code "
    "server) leaves no session running: finalise it failed, or write it if it was never opened.",
)
aggregation_session_cancelled = _session_run_sensor(
    "aggregation_session_cancelled",
    dg.DagsterRunStatus.CANCELED,
    "A session-step run that was terminated: its session ends cancelled (records failed, "
    "'cancelled by user') even if the step never got to handle the interrupt.",
)
