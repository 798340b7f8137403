"""Runs whose `sizeagg run` process is gone are ended, their slots freed, their sessions closed.

`sizeagg run` executes runs in its own process (no launcher, no code server): a
SIGKILL, an OOM kill or a lost host leaves them STARTED, holding their `app_db`
pool slots, and once every slot is held nothing runs any more. Each in-process run
names its owner in its tags (`vocabulary.owner_tags`); a run is dead when its owner
is: in the same pid namespace the kernel says so at once (the pid is gone, or now
belongs to a process started at another time); from elsewhere the owner's heartbeat
has been silent for HEARTBEAT_TIMEOUT. A dead run is marked failed through the
instance — which ends it for Dagster like any failed run — its slots are freed with
the event log storage's own call (what Dagster's monitoring daemon does for finished
runs), and its execution's session ends failed through the closer with the reason.

`heal` runs at the start of every `sizeagg run` (and while one waits for a slot),
and in the daemon as the `dead_run_healer` sensor.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.owner import Owner
from ...core.sessions import Outcome
from ...core.settings import as_utc, operations, utc_now
from .. import automation
from ..aggregates.assets import APP_DB_POOL
from ..resources import AppDatabase
from .asset import aggregation_session_job
from .closer import end_session
from .executions import linked, sync_type_of
from .failures import close_session_of_run
from .vocabulary import EXECUTION_TAG, HEARTBEAT_TAG, ExecutionId, owner_of

HEARTBEAT_INTERVAL = timedelta(seconds=30)  # how often a live `sizeagg run` renews its runs' heartbeat
HEARTBEAT_TIMEOUT = timedelta(minutes=5)  # silent this long, an owner on another host counts as dead
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def why_dead(owner: Owner, last_sign: datetime, now: datetime) -> str | None:
    """Why `owner` counts as dead (None: alive, or too soon to tell)."""
    if owner.is_local():
        return None if owner.alive_here() else f"its process ({owner}) is gone"
    silent = now - last_sign
    if silent <= HEARTBEAT_TIMEOUT:
        return None
    return f"its process ({owner}) has sent no heartbeat for {int(silent.total_seconds())} s"


def _last_sign(record: dg.RunRecord) -> datetime:
    beat = record.dagster_run.tags.get(HEARTBEAT_TAG)
    return datetime.fromisoformat(beat) if beat else as_utc(record.create_timestamp)


def slots_held(instance: dg.DagsterInstance) -> dict[str, int]:
    """Run id → `app_db` slots it holds."""
    if not instance.event_log_storage.supports_global_concurrency_limits:
        return {}
    held: dict[str, int] = {}
    for slot in instance.event_log_storage.get_concurrency_info(APP_DB_POOL).claimed_slots:
        held[slot.run_id] = held.get(slot.run_id, 0) + 1
    return held


@dataclass(frozen=True)
class DeadRun:
    run: dg.DagsterRun
    reason: str  # why its owner counts as dead


def dead_runs(instance: dg.DagsterInstance, now: datetime) -> list[DeadRun]:
    """Unfinished in-process runs whose owner is dead (runs Dagster launched are not ours)."""
    found = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED)):
        owner = owner_of(record.dagster_run.tags)
        reason = why_dead(owner, _last_sign(record), now) if owner else None
        if reason:
            found.append(DeadRun(record.dagster_run, reason))
    return found


def _end_run(instance: dg.DagsterInstance, engine: sa.Engine, dead: DeadRun, slots: int) -> list[str]:
    run = dead.run
    instance.report_run_failed(run, message=f"sizeagg: {dead.reason}; marked failed by the dead-run check")
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    done = [
        f"run {run.run_id[:8]} ({run.job_name}) marked failed, {slots} {APP_DB_POOL} slot(s) freed: "
        f"{dead.reason}"
    ]
    failed = instance.get_run_by_id(run.run_id)
    if failed is not None and run.job_name == aggregation_session_job.name:
        done.append(close_session_of_run(instance, engine, failed))
    return done


def _end_unlinked(
    instance: dg.DagsterInstance, engine: sa.Engine, unlinked: sessions.Unlinked, now: datetime
) -> str | None:
    """The session of an execution whose process died before it had one (e.g. between runs)."""
    runs = instance.get_run_records(filters=dg.RunsFilter(tags={EXECUTION_TAG: unlinked.execution_id}))
    if any(not r.dagster_run.is_finished for r in runs):
        return None  # its owner lives (or its runs are healed first)
    last_sign = max([as_utc(unlinked.created_at), *(as_utc(r.update_timestamp) for r in runs)])
    reason = why_dead(Owner.load(unlinked.owner), last_sign, now)
    if reason is None:
        return None
    tags = runs[0].dagster_run.tags if runs else {}
    sync_type = sync_type_of(tags) if runs else ExecutionId.sync_type(unlinked.execution_id)
    execution = linked(instance, unlinked.execution_id, {EXECUTION_TAG: unlinked.execution_id}, sync_type)
    parts = [r.failure_text() for r in execution.failures] + list(execution.missing)
    outcome = Outcome.failed("; ".join([f"aggregation failed: sizeagg run ended early, {reason}", *parts]))
    ended = end_session(engine, execution, outcome)
    return f"{unlinked.execution_id}: {ended} failed" if ended.changed else None


def heal(instance: dg.DagsterInstance, engine: sa.Engine, now: datetime) -> list[str]:
    """End every run whose `sizeagg run` process is gone, and its execution's session."""
    done: list[str] = []
    found = dead_runs(instance, now)
    held = slots_held(instance) if found else {}
    for dead in found:
        done += _end_run(instance, engine, dead, held.get(dead.run.run_id, 0))
    with engine.connect() as conn:
        unlinked = sessions.unlinked_executions(conn)
    for execution in unlinked:
        ended = _end_unlinked(instance, engine, execution, now)
        if ended:
            done.append(ended)
    return done


def summary(done: Sequence[str]) -> str:
    return f"healed {len(done)}: " + "; ".join(done) if done else "no dead sizeagg run"


@automation.sensor(
    "dead_run_healer",
    operations().sensor_interval,
    "Ends runs that `sizeagg run` executed in process and whose process is gone (killed, "
    "out of memory, host lost): marks them failed, frees their app_db pool slots, and ends "
    "their execution's session failed with the reason. Without it, four such crashes hold "
    "every slot and every later run waits forever.",
)
def dead_run_healer(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SkipReason:
    return dg.SkipReason(summary(heal(context.instance, db.engine, utc_now())))
