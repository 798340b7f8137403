"""Unattended operation: the daily tick, the gate, late data, and the session finalisers.

Every sensor here starts RUNNING on a fresh deployment (the Dagster default is
STOPPED, which would silently disable the schedule and the safety nets).

* `daily_aggregation_tick`: at the configured business time, one execution for the
  previous business day (four period runs, run keys `tick:<day>:<period>`).
* `aggregation_gate`: launches the session step of a sensor-started execution once
  all its period runs succeeded, or writes its failed session.
* `raw_data_changes`: fingerprints recent raw days and re-materializes exactly the
  partitions a late or corrected day invalidates (then the gate writes the session).
* `backfill_sessions`: a backfill that selected `aggregation_session` but ended
  before the session step wrote anything still gets its one session.
* `aggregation_session_failed` / `aggregation_session_cancelled`: a session step
  that died or was terminated without finalising its session (a killed worker).
* `session_janitor`: any session still `running` whose run is finished, missing
  or older than the maximum runtime (a lost host: no process left to notice).
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionsFilter,
    BulkActionStatus,
    PartitionBackfill,
)

from . import executions, observations
from .core import sessions
from .core.aggregation import LEVELS
from .core.periods import PERIODS, Period, parse_date
from .core.settings import Calendar, operations
from .jobs import PERIOD_JOBS, aggregation_session_job
from .partitions import CALENDAR
from .resources import AppDatabase

OPS = operations()
RUNNING = dg.DefaultSensorStatus.RUNNING
TICK_TEXT = OPS.daily_tick.strftime("%H:%M") if OPS.daily_tick else "(off)"

CATCH_UP_DAYS = 7  # a daemon down for longer leaves older days to a backfill
GATE_LOOKBACK = timedelta(days=1)  # a fresh gate still sees executions of the last day
BACKFILL_LOOKBACK = timedelta(days=7)
CURSOR_OVERLAP = timedelta(seconds=5)  # re-read runs updated around the cursor instant
GATED_TRIGGERS = ("tick", "late_data")  # CLI executions write their own session


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """SQLite returns naive timestamps; they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- daily tick


def due_day(now: datetime, tick: time, calendar: Calendar = CALENDAR) -> date:
    """The business day whose execution is due at `now`.

    The latest tick at or before `now` (today's if its time has passed, else
    yesterday's) covers the business day before the tick's date.
    """
    local = now.astimezone(calendar.tz)
    tick_date = local.date() if local.time() >= tick else local.date() - timedelta(days=1)
    return tick_date - timedelta(days=1)


def tick_run_requests(day: date) -> list[dg.RunRequest]:
    """The four period runs of the scheduled execution for business day `day`."""
    execution_id = f"scheduled:{day.isoformat()}"
    tags = executions.execution_tags(execution_id, sessions.SCHEDULED, trigger="tick", day=day)
    return [
        dg.RunRequest(
            run_key=f"tick:{day.isoformat()}:{period}",
            job_name=PERIOD_JOBS[period].name,
            partition_key=key,
            tags=tags,
        )
        for period, key in executions.tick_partitions(day).items()
    ]


def daily_tick(
    now: datetime, cursor: str | None, tick: time, calendar: Calendar = CALENDAR
) -> dg.SensorResult:
    """What the tick sensor does at `now`, given the last day it launched (its cursor).

    Run keys make a re-evaluated tick (a daemon restart before the cursor was saved)
    launch nothing twice; the cursor only spares the daemon the duplicate requests.
    """
    due = due_day(now, tick, calendar)
    if due < calendar.start_date:
        return dg.SensorResult(skip_reason=f"{due} is before the first partition ({calendar.start_date})")
    last = parse_date(cursor, "cursor") if cursor else None
    if last is not None and last >= due:
        return dg.SensorResult(skip_reason=f"the execution for {due} was launched; next tick {tick} tomorrow")
    first = due if last is None else max(last + timedelta(days=1), due - timedelta(days=CATCH_UP_DAYS - 1))
    first = max(first, calendar.start_date)
    days = [first + timedelta(days=i) for i in range((due - first).days + 1)]
    requests = [request for day in days for request in tick_run_requests(day)]
    return dg.SensorResult(run_requests=requests, cursor=due.isoformat())


@dg.sensor(
    name="daily_aggregation_tick",
    jobs=list(PERIOD_JOBS.values()),
    minimum_interval_seconds=min(OPS.sensor_interval, 60),
    default_status=RUNNING,
    description=(
        f"Every day at {TICK_TEXT} {CALENDAR.timezone} (SIZEAGG_DAILY_TICK, 'off' disables it): one "
        "aggregation execution for the previous business day: its daily partition and the "
        "weekly, monthly and quarterly partitions containing it, both levels. Runs are "
        "tagged sizeagg/execution=scheduled:<day>; the gate then writes the session."
    ),
)
def daily_aggregation_tick(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    if OPS.daily_tick is None:
        return dg.SensorResult(skip_reason="the daily tick is off (SIZEAGG_DAILY_TICK=off)")
    return daily_tick(_now(), context.cursor, OPS.daily_tick)


# --------------------------------------------------------------------------- outcomes


def session_run_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str, str]:
    """(session status, reason) for a session-step run that ended without finalising."""
    if run.status == dg.DagsterRunStatus.CANCELED:
        status, why = executions.interruption(instance, run.run_id)
        return status, f"session step run {run.run_id[:8]} was terminated: {why}"
    error = executions.run_error(instance, run) or "no error recorded"
    return "failed", f"session step run {run.run_id[:8]} ended {run.status.value}: {error}"


def _configured_day(run: dg.DagsterRun) -> date:
    config = run.run_config.get("ops", {}).get(executions.SESSION_ASSET, {}).get("config", {})
    return parse_date(config["date"]) if config.get("date") else CALENDAR.yesterday()


def close_session_of_run(instance: dg.DagsterInstance, engine: sa.Engine, run: dg.DagsterRun) -> str:
    """End the session of a session-step run that died: finalise it, or write it if never opened."""
    status, reason = session_run_outcome(instance, run)
    with engine.begin() as conn:
        session_id = sessions.session_for_run(conn, run.run_id)
        if session_id is not None:
            changed = sessions.finalise_session(conn, session_id, status=status, reason=reason)
            return f"session {session_id} {'finalised ' + status if changed else 'had already ended'}"
    execution = executions.describe(instance, run, default_day=_configured_day(run))
    session_id = executions.write_failed_session(engine, execution, reason=reason, status=status)
    return f"session {session_id} of {execution.id} ended {status}"


# --------------------------------------------------------------------------- gate


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
class Verdict:
    closed: bool
    message: str
    request: dg.RunRequest | None = None


def judge_execution(
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    execution_id: str,
    first_seen: datetime,
    now: datetime,
    stale_after: timedelta,
) -> Verdict:
    """Decide one gated execution: wait, launch its session step, or end it with a session."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={executions.EXECUTION_TAG: execution_id}))
    period_runs = [r for r in runs if r.job_name in executions.PERIOD_JOB_NAMES]
    session_runs = [r for r in runs if r.job_name == executions.SESSION_JOB]
    if not period_runs:
        return Verdict(True, f"{execution_id}: no period runs")
    tags = period_runs[0].tags
    sync_type = executions.sync_type_of(tags)
    if session_runs:
        latest = session_runs[0]  # get_runs lists the newest first
        if not all(r.is_finished for r in session_runs):
            return Verdict(False, f"{execution_id}: session step running")
        with engine.connect() as conn:
            existing = sessions.session_for_execution(conn, execution_id)
        if existing:
            return Verdict(True, f"{execution_id}: session {existing}")
        status, reason = session_run_outcome(instance, latest)
        execution = executions.linked(
            instance, execution_id, {executions.EXECUTION_TAG: execution_id}, sync_type
        )
        session_id = executions.write_failed_session(engine, execution, reason=reason, status=status)
        return Verdict(True, f"{execution_id}: session step died before writing; session {session_id}")
    expected = int(tags.get(executions.RUNS_TAG, len(PERIODS)))
    unfinished = [r for r in period_runs if not r.is_finished]
    if len(period_runs) < expected or unfinished:
        if now - first_seen <= stale_after:
            return Verdict(
                False, f"{execution_id}: {len(period_runs) - len(unfinished)}/{expected} runs done"
            )
        execution = executions.linked(
            instance, execution_id, {executions.EXECUTION_TAG: execution_id}, sync_type
        )
        states = ", ".join(f"{r.job_name} {r.status.value}" for r in period_runs)
        reason = (
            f"aggregation failed: the execution did not finish within {int(stale_after.total_seconds())} s "
            f"({len(period_runs)} of {expected} period runs launched: {states})"
        )
        session_id = executions.write_failed_session(engine, execution, reason=reason)
        return Verdict(True, f"{execution_id}: gave up waiting; session {session_id}")
    execution = executions.linked(
        instance,
        execution_id,
        {executions.EXECUTION_TAG: execution_id},
        sync_type,
        executions.expected_periods(tags),
    )
    if not execution.ok:
        session_id = executions.write_failed_session(engine, execution)
        return Verdict(True, f"{execution_id}: failed upstream; session {session_id}")
    with engine.connect() as conn:
        existing = sessions.session_for_execution(conn, execution_id)
    if existing:  # the gate gave up on it earlier; late successes do not make a second session
        return Verdict(True, f"{execution_id}: session {existing}")
    session_tags = {k: v for k, v in tags.items() if k.startswith("sizeagg/")}
    request = dg.RunRequest(run_key=f"session:{execution_id}", tags=session_tags)
    return Verdict(False, f"{execution_id}: all {expected} period runs succeeded; session step", request)


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
        newest = max(newest, _utc(record.update_timestamp))
        tags = record.dagster_run.tags
        if tags.get(executions.TRIGGER_TAG) in GATED_TRIGGERS and executions.EXECUTION_TAG in tags:
            candidates.setdefault(tags[executions.EXECUTION_TAG], now.timestamp())
    requests, messages, pending = [], [], {}
    for execution_id, first_seen in sorted(candidates.items()):
        verdict = judge_execution(
            instance, engine, execution_id, datetime.fromtimestamp(first_seen, UTC), now, stale_after
        )
        messages.append(verdict.message)
        if verdict.request is not None:
            requests.append(verdict.request)
        if not verdict.closed:
            pending[execution_id] = first_seen
    new_cursor = GateCursor(after=newest.timestamp(), pending=pending).dump()
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)
    return dg.SensorResult(skip_reason="; ".join(messages) or "no execution changed", cursor=new_cursor)


@dg.sensor(
    name="aggregation_gate",
    job=aggregation_session_job,
    minimum_interval_seconds=OPS.sensor_interval,
    default_status=RUNNING,
    description=(
        "Launches aggregation_session_job for a scheduled or late-data execution once every "
        "period run tagged with its sizeagg/execution succeeded; when one failed or was "
        "cancelled, writes that execution's failed session instead (naming the period, "
        "partitions and error). Reads run records since its cursor; no polling inside a run."
    ),
)
def aggregation_gate(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    return gate_tick(
        context.instance, db.engine, context.cursor, _now(), timedelta(seconds=OPS.session_max_runtime)
    )


# --------------------------------------------------------------------------- backfills


def close_backfill(instance: dg.DagsterInstance, engine: sa.Engine, backfill: PartitionBackfill) -> str:
    """Give a finished backfill that selected the session step its one session."""
    execution_id = f"backfill:{backfill.backfill_id}"
    with engine.connect() as conn:
        existing = sessions.session_for_execution(conn, execution_id)
    if existing:
        return f"{execution_id}: session {existing}"
    execution = executions.backfill_execution(instance, backfill)
    session_runs = [
        r
        for r in instance.get_runs(
            filters=dg.RunsFilter(tags={executions.BACKFILL_TAG: backfill.backfill_id})
        )
        if executions.SESSION_ASSET in {k.to_user_string() for k in r.asset_selection or ()}
    ]
    status = "failed"
    if backfill.status == BulkActionStatus.CANCELED:
        status = "cancelled"
        reason = f"backfill {backfill.backfill_id} was cancelled by user"
        if execution.failures:
            reason += "; " + execution.reason()
    elif not execution.ok:
        reason = execution.reason()
    elif session_runs:
        status, reason = session_run_outcome(instance, session_runs[0])
    else:
        reason = f"backfill {backfill.backfill_id} ended {backfill.status.value} before the session step ran"
    session_id = executions.write_failed_session(engine, execution, reason=reason, status=status)
    return f"{execution_id}: session {session_id} {status}"


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
        selected = {k.to_user_string() for k in backfill.asset_selection or ()}
        if executions.SESSION_ASSET in selected:
            messages.append(close_backfill(instance, engine, backfill))
        handled[backfill.backfill_id] = backfill.backfill_timestamp
    horizon = (now - BACKFILL_LOOKBACK - timedelta(days=1)).timestamp()
    handled = {k: v for k, v in handled.items() if v >= horizon}
    return dg.SensorResult(
        skip_reason="; ".join(messages) or "no finished backfill without a session",
        cursor=json.dumps(handled, sort_keys=True),
    )


@dg.sensor(
    name="backfill_sessions",
    minimum_interval_seconds=OPS.sensor_interval,
    default_status=RUNNING,
    description=(
        "A backfill that selected aggregation_session but ended without it (an upstream "
        "partition failed, or the backfill was cancelled) still gets exactly one session: "
        "failed, or cancelled, with the failed periods, partitions and errors named."
    ),
)
def backfill_sessions(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    return backfill_tick(context.instance, db.engine, context.cursor, _now())


# --------------------------------------------------------------------------- session run died


@dg.run_failure_sensor(
    name="aggregation_session_failed",
    monitored_jobs=[aggregation_session_job],
    minimum_interval_seconds=OPS.sensor_interval,
    default_status=RUNNING,
    description=(
        "A session-step run that failed (a SIGKILLed worker is marked failed by the code "
        "server) leaves no session running: finalise it failed, or write it if it was never opened."
    ),
)
def aggregation_session_failed(context: dg.RunFailureSensorContext, db: AppDatabase) -> dg.SkipReason:
    return dg.SkipReason(close_session_of_run(context.instance, db.engine, context.dagster_run))


@dg.run_status_sensor(
    name="aggregation_session_cancelled",
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[aggregation_session_job],
    minimum_interval_seconds=OPS.sensor_interval,
    default_status=RUNNING,
    description=(
        "A session-step run that was terminated: its session ends cancelled (records failed, "
        "'cancelled by user') even if the step never got to handle the interrupt."
    ),
)
def aggregation_session_cancelled(context: dg.RunStatusSensorContext, db: AppDatabase) -> dg.SkipReason:
    return dg.SkipReason(close_session_of_run(context.instance, db.engine, context.dagster_run))


# --------------------------------------------------------------------------- janitor


def sweep(
    instance: dg.DagsterInstance, engine: sa.Engine, now: datetime, max_runtime: timedelta
) -> list[str]:
    """Finalise every `running` session whose run is finished, missing or too old."""
    with engine.connect() as conn:
        running = sessions.running_sessions(conn)
    done = []
    for summary, details in running:
        age = now - _utc(summary.started_at) if summary.started_at else max_runtime * 2
        run_id = details.get("session_run_id")
        run = instance.get_run_by_id(run_id) if run_id else None
        if run_id and run is None:
            status, reason = "failed", f"janitor: its Dagster run {run_id} no longer exists"
        elif run is not None and run.is_finished:
            status, why = session_run_outcome(instance, run)
            reason = f"janitor: {why}"
        elif age > max_runtime:
            where = f"its Dagster run {run_id[:8]} is still {run.status.value}" if run else "it has no run"
            status = "failed"
            reason = (
                f"janitor: {where} after {int(age.total_seconds())} s, more than the maximum "
                f"runtime of {int(max_runtime.total_seconds())} s (lost worker or host)"
            )
        else:
            continue
        with engine.begin() as conn:
            if sessions.finalise_session(conn, summary.session_id, status=status, reason=reason):
                done.append(f"{summary.session_id} {status}: {reason}")
    return done


@dg.sensor(
    name="session_janitor",
    minimum_interval_seconds=OPS.janitor_interval,
    default_status=RUNNING,
    description=(
        "Reconciles sync_sessions with Dagster: a session still running whose run finished, "
        "no longer exists, or has run longer than SIZEAGG_SESSION_MAX_RUNTIME_SECONDS is "
        "finalised failed with the reason. Covers what the run-status sensors cannot see "
        "(history before their first tick, a host lost with its code server)."
    ),
)
def session_janitor(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SkipReason:
    done = sweep(context.instance, db.engine, _now(), timedelta(seconds=OPS.session_max_runtime))
    return dg.SkipReason(f"finalised {len(done)}: " + "; ".join(done) if done else "no stale session")


# --------------------------------------------------------------------------- late data


@dataclass
class ObservationCursor:
    since: str
    generation: int  # how many late-data executions this sensor launched
    days: dict[str, dict[str, str]]  # level → day → fingerprint

    @classmethod
    def load(cls, text: str | None) -> "ObservationCursor | None":
        if not text:
            return None
        data = json.loads(text)
        return cls(since=data["since"], generation=data["generation"], days=data["days"])

    def dump(self) -> str:
        return json.dumps(
            {"since": self.since, "generation": self.generation, "days": self.days}, sort_keys=True
        )


def materialized_partitions(instance: dg.DagsterInstance) -> dict[str, dict[Period, set[str]]]:
    """Per level, the partitions of each period materialized at least once."""
    return {
        level.name: {
            period: instance.get_materialized_partitions(dg.AssetKey(level.asset_name(period)))
            for period in PERIODS
        }
        for level in LEVELS
    }


def late_data_requests(execution_id: str, plan: observations.Plan) -> list[dg.RunRequest]:
    """One run per period and stretch of consecutive windows needing the same levels."""
    groups = [
        (period, first, last, levels)
        for period, windows in plan.items()
        for first, last, levels in observations.run_groups(windows)
    ]
    tags = executions.execution_tags(
        execution_id, sessions.SCHEDULED, trigger="late_data", periods=list(plan), runs=len(groups)
    )
    requests = []
    for period, first, last, levels in groups:
        run_tags: dict[str, Any] = dict(tags)
        if first != last:
            run_tags[executions.RANGE_START_TAG] = first.key
            run_tags[executions.RANGE_END_TAG] = last.key
        both = len(levels) == len(LEVELS)
        requests.append(
            dg.RunRequest(
                run_key=f"{execution_id}:{period}:{first.key}:{last.key}:{'+'.join(sorted(levels))}",
                job_name=PERIOD_JOBS[period].name,
                partition_key=first.key if first == last else None,
                asset_selection=None
                if both
                else [dg.AssetKey(level.asset_name(period)) for level in LEVELS if level.name in levels],
                tags=run_tags,
            )
        )
    return requests


def observe_tick(
    instance: dg.DagsterInstance, engine: sa.Engine, cursor: str | None, now: datetime, days: int
) -> dg.SensorResult:
    """Compare the raw days' fingerprints with the last ones; re-run what changed days invalidate."""
    since = CALENDAR.today(now) - timedelta(days=days)
    with engine.connect() as conn:
        current = observations.fingerprints(conn, since)
    state = ObservationCursor.load(cursor)
    if state is None:
        baseline = ObservationCursor(since.isoformat(), 0, current)
        count = len(set().union(*current.values()))
        return dg.SensorResult(
            skip_reason=f"baseline: {count} raw days since {since}", cursor=baseline.dump()
        )
    compare_from = max(since, date.fromisoformat(state.since))
    changed = observations.changed_days(state.days, current, compare_from)
    plan = observations.affected_windows(changed, materialized_partitions(instance)) if changed else {}
    generation = state.generation + (1 if plan else 0)
    new_cursor = ObservationCursor(since.isoformat(), generation, current).dump()
    changed_text = "; ".join(
        f"{level}: {', '.join(d.isoformat() for d in ds)}" for level, ds in changed.items()
    )
    if not plan:
        text = f"changed, not aggregated yet: {changed_text}" if changed else "no raw day changed"
        return dg.SensorResult(skip_reason=text, cursor=new_cursor)
    digest = hashlib.sha1(changed_text.encode()).hexdigest()[:8]
    execution_id = f"late:{generation}:{digest}"
    requests = late_data_requests(execution_id, plan)
    summary = "; ".join(
        f"{p} " + ", ".join(f"{w.key} ({'+'.join(sorted(levels))})" for w, levels in windows.items())
        for p, windows in plan.items()
    )
    events = [
        dg.AssetObservation(
            asset_key=observations.TABLES[level][0].name,
            metadata={
                "changed_days": ", ".join(d.isoformat() for d in level_days),
                "re_materialized": summary,
                "execution": execution_id,
            },
        )
        for level, level_days in changed.items()
    ]
    return dg.SensorResult(run_requests=requests, cursor=new_cursor, asset_events=events)


@dg.sensor(
    name="raw_data_changes",
    jobs=list(PERIOD_JOBS.values()),
    minimum_interval_seconds=OPS.observe_interval,
    default_status=RUNNING,
    description=(
        "Observes the raw tables per recent day (row count, latest collected_at, checksum; "
        "SIZEAGG_LATE_DATA_DAYS days back). When an already aggregated day changed, "
        "re-materializes exactly the daily/weekly/monthly/quarterly partitions containing it "
        "and the following ones whose previous-window comparison it feeds (only partitions "
        "materialized before), as one execution the gate then closes with a session."
    ),
)
def raw_data_changes(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    return observe_tick(context.instance, db.engine, context.cursor, _now(), OPS.late_data_days)


SENSORS = [
    daily_aggregation_tick,
    aggregation_gate,
    raw_data_changes,
    backfill_sessions,
    aggregation_session_failed,
    aggregation_session_cancelled,
    session_janitor,
]
