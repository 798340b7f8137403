"""The gate: an execution's session step runs only after all its period runs succeeded.

For executions the tick and the late-data sensor start (`Trigger.gated`), the
`aggregation_gate` sensor reads the run records updated since its cursor and
decides each open execution: wait, launch its session step, or end it with a
failed session naming the failed period, partitions and error. `sizeagg run`
takes the same decision in process (`decide`), so both paths agree.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.periods import PERIODS
from ...core.sessions import Outcome
from ...core.settings import as_utc, operations, utc_now
from .. import automation
from ..resources import AppDatabase
from .asset import aggregation_session_job
from .closer import end_session
from .executions import period_of, session_run_outcome, tagged
from .vocabulary import EXECUTION_TAG, GATED_TRIGGERS, RUNS_TAG, TRIGGER_TAG

GATE_LOOKBACK = timedelta(days=1)  # a fresh gate still sees executions of the last day
CURSOR_OVERLAP = timedelta(seconds=5)  # re-read runs updated around the cursor instant


@dataclass
class GateCursor:
    after: float | None  # update timestamp of the newest run seen
    pending: dict[str, float]  # execution id → when the gate first saw it

    @classmethod
    def load(cls, text: str | None) -> "GateCursor":
        data = json.loads(text) if text else {}
        return cls(after=data.get("after"), pending=dict(data.get("pending", {})))

    def dump(self) -> str:
        return json.dumps({"after": self.after, "pending": self.pending}, sort_keys=True)


@dataclass(frozen=True)
class Decision:
    closed: bool  # the execution has its session (or will, from the requested step)
    message: str
    request: dg.RunRequest | None = None  # launch the session step


def decide(
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    execution_id: str,
    first_seen: datetime,
    now: datetime,
    stale_after: timedelta,
) -> Decision:
    """Decide one execution linked by `sizeagg/execution`: wait, launch its session step, or end it."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={EXECUTION_TAG: execution_id}))
    period_runs = [r for r in runs if period_of(r) is not None]
    session_runs = [r for r in runs if r.job_name == aggregation_session_job.name]
    if not period_runs:
        return Decision(True, f"{execution_id}: no period runs")
    tags = period_runs[0].tags
    if session_runs:
        latest = session_runs[0]  # get_runs lists the newest first
        if not all(r.is_finished for r in session_runs):
            return Decision(False, f"{execution_id}: session step running")
        with engine.connect() as conn:
            existing = sessions.session_for_execution(conn, execution_id)
        if existing:
            return Decision(True, f"{execution_id}: session {existing}")
        execution = tagged(instance, execution_id, tags)
        ended = end_session(engine, execution, session_run_outcome(instance, latest))
        return Decision(True, f"{execution_id}: session step died before writing; {ended}")
    expected = int(tags.get(RUNS_TAG, len(PERIODS)))
    unfinished = [r for r in period_runs if not r.is_finished]
    if len(period_runs) < expected or unfinished:
        if now - first_seen <= stale_after:
            return Decision(
                False, f"{execution_id}: {len(period_runs) - len(unfinished)}/{expected} runs done"
            )
        states = ", ".join(f"{r.job_name} {r.status.value}" for r in period_runs)
        outcome = Outcome.failed(
            f"aggregation failed: the execution did not finish within {int(stale_after.total_seconds())} s "
            f"({len(period_runs)} of {expected} period runs launched: {states})"
        )
        ended = end_session(engine, tagged(instance, execution_id, tags), outcome)
        return Decision(True, f"{execution_id}: gave up waiting; {ended}")
    execution = tagged(instance, execution_id, tags)
    if not execution.ok:
        ended = end_session(engine, execution, execution.outcome())
        return Decision(True, f"{execution_id}: failed upstream; {ended}")
    with engine.connect() as conn:
        existing = sessions.session_for_execution(conn, execution_id)
    if existing:  # the gate gave up on it earlier; late successes do not make a second session
        return Decision(True, f"{execution_id}: session {existing}")
    session_tags = {k: v for k, v in tags.items() if k.startswith("sizeagg/")}
    request = dg.RunRequest(run_key=f"session:{execution_id}", tags=session_tags)
    return Decision(False, f"{execution_id}: all {expected} period runs succeeded; session step", request)


def gate_tick(
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    cursor: str | None,
    now: datetime,
    stale_after: timedelta,
) -> dg.SensorResult:
    """One evaluation of the gate: every execution touched since the cursor, or still open."""
    state = GateCursor.load(cursor)
    after = datetime.fromtimestamp(state.after, UTC) if state.after else now - GATE_LOOKBACK
    records = instance.get_run_records(
        filters=dg.RunsFilter(updated_after=after - CURSOR_OVERLAP),
        order_by="update_timestamp",
        ascending=True,
    )
    candidates = dict(state.pending)
    newest = after
    for record in records:
        newest = max(newest, as_utc(record.update_timestamp))
        tags = record.dagster_run.tags
        if EXECUTION_TAG in tags and tags.get(TRIGGER_TAG) in GATED_TRIGGERS:
            candidates.setdefault(tags[EXECUTION_TAG], now.timestamp())
    requests, messages, pending = [], [], {}
    for execution_id, first_seen in sorted(candidates.items()):
        decision = decide(
            instance, engine, execution_id, datetime.fromtimestamp(first_seen, UTC), now, stale_after
        )
        messages.append(decision.message)
        if decision.request is not None:
            requests.append(decision.request)
        if not decision.closed:
            pending[execution_id] = first_seen
    new_cursor = GateCursor(after=newest.timestamp(), pending=pending).dump()
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)
    return dg.SensorResult(skip_reason="; ".join(messages) or "no execution changed", cursor=new_cursor)


@automation.sensor(
    "aggregation_gate",
    operations().sensor_interval,
    "Launches aggregation_session_job for a scheduled or late-data execution once every "
    "period run tagged with its sizeagg/execution succeeded; when one failed or was "
    "cancelled, writes that execution's failed session instead (naming the period, "
    "partitions and error). Reads run records since its cursor; no polling inside a run.",
    job=aggregation_session_job,
)
def aggregation_gate(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    stale_after = timedelta(seconds=operations().session_max_runtime)
    return gate_tick(context.instance, db.engine, context.cursor, utc_now(), stale_after)
