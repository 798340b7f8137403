"""A backfill that selected `aggregation_session` always gets its one session.

A UI backfill orders its runs by lineage and launches the session step last; when
an upstream partition fails, or a person cancels the backfill, the step never runs.
This sensor gives every such backfill its session: failed or cancelled, with the
failed periods, partitions and errors named.
"""

import json
from datetime import datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.sessions import Outcome
from ...core.settings import operations, utc_now
from ...dagster_private import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionsFilter,
    BulkActionStatus,
    PartitionBackfill,
)
from .. import automation
from ..resources import AppDatabase
from .asset import aggregation_session
from .closer import end_session
from .executions import backfill_execution, session_run_outcome
from .vocabulary import BACKFILL_TAG, ExecutionId

BACKFILL_LOOKBACK = timedelta(days=7)


def _outcome(instance: dg.DagsterInstance, backfill: PartitionBackfill) -> Outcome:
    execution = backfill_execution(instance, backfill)
    if backfill.status == BulkActionStatus.CANCELED:
        reason = f"backfill {backfill.backfill_id} was cancelled by user"
        if execution.failures:
            reason += "; " + execution.reason()
        return Outcome.cancelled(reason)
    if not execution.ok:
        return execution.outcome()
    session_runs = [
        r
        for r in instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill.backfill_id}))
        if aggregation_session.key in (r.asset_selection or ())
    ]
    if session_runs:
        return session_run_outcome(instance, session_runs[0])
    return Outcome.failed(
        f"backfill {backfill.backfill_id} ended {backfill.status.value} before the session step ran"
    )


def close_backfill(instance: dg.DagsterInstance, engine: sa.Engine, backfill: PartitionBackfill) -> str:
    """Give a finished backfill that selected the session step its one session."""
    execution_id = ExecutionId.backfill(backfill.backfill_id)
    with engine.connect() as conn:
        existing = sessions.session_for_execution(conn, execution_id)
    if existing:
        return f"{execution_id}: session {existing}"
    outcome = _outcome(instance, backfill)
    ended = end_session(engine, backfill_execution(instance, backfill), outcome)
    return f"{execution_id}: {ended} {outcome.status}"


def backfill_tick(
    instance: dg.DagsterInstance, engine: sa.Engine, cursor: str | None, now: datetime
) -> dg.SensorResult:
    handled: dict[str, float] = json.loads(cursor) if cursor else {}
    messages = []
    backfills = instance.get_backfills(
        filters=BulkActionsFilter(
            statuses=list(BULK_ACTION_TERMINAL_STATUSES), created_after=now - BACKFILL_LOOKBACK
        ),
        limit=200,
    )
    for backfill in backfills:
        if backfill.backfill_id in handled:
            continue
        if aggregation_session.key in (backfill.asset_selection or ()):
            messages.append(close_backfill(instance, engine, backfill))
        handled[backfill.backfill_id] = backfill.backfill_timestamp
    horizon = (now - BACKFILL_LOOKBACK - timedelta(days=1)).timestamp()
    handled = {k: v for k, v in handled.items() if v >= horizon}
    return dg.SensorResult(
        skip_reason="; ".join(messages) or "no finished backfill without a session",
        cursor=json.dumps(handled, sort_keys=True),
    )


@automation.sensor(
    "backfill_sessions",
    operations().sensor_interval,
    "A backfill that selected aggregation_session but ended without it (an upstream "
    "partition failed, or the backfill was cancelled) still gets exactly one session: "
    "failed, or cancelled, with the failed periods, partitions and errors named.",
)
def backfill_sessions(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    return backfill_tick(context.instance, db.engine, context.cursor, utc_now())
