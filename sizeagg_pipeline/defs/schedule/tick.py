"""The daily tick: every day at its business time, one execution for the previous business day.

An execution is four period runs (one job per period: assets of different
partitions definitions cannot share a run), so the tick is four Dagster schedules,
one per period job, all at SIZEAGG_DAILY_TICK in the business time zone. The
Automation page shows each one's next tick at that time; the gate sensor then
writes the session once all four runs ended.

Each schedule requests the partition of its period that contains the due day, with
the run key `tick:<day>:<period>`: a tick evaluated twice launches nothing twice.
It also catches up the days since the last day it launched (at most a week;
older days are a backfill's job), which Dagster's scheduler does not do for
schedules without a partition set. It skips a day whose execution already
completed (by `sizeagg run`, a backfill or an earlier tick): the four partitions
containing it were materialized after the day ended, by runs of one completed
session.
"""

from datetime import date, datetime, time, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.periods import PERIODS, Period, window_containing
from ...core.settings import Calendar, operations
from .. import automation
from ..aggregates.assets import assets_of
from ..aggregates.jobs import PERIOD_JOBS
from ..aggregates.partitions import CALENDAR
from ..resources import AppDatabase
from ..sessions.vocabulary import (
    PARTITION_TAG,
    TRIGGER_TAG,
    ExecutionId,
    Trigger,
    execution_id_of,
    execution_tags,
)

CATCH_UP_DAYS = 7  # a scheduler down for longer leaves older days to a backfill
OFF_TICK = time(4, 0)  # the cron of a tick that is off (SIZEAGG_DAILY_TICK=off): never launches


def due_day(now: datetime, tick: time, calendar: Calendar = CALENDAR) -> date:
    """The business day whose execution is due at `now`.

    The latest tick at or before `now` (today's if its time has passed, else
    yesterday's) covers the business day before the tick's date.
    """
    local = now.astimezone(calendar.tz)
    tick_date = local.date() if local.time() >= tick else local.date() - timedelta(days=1)
    return tick_date - timedelta(days=1)


def tick_run_request(day: date, period: Period) -> dg.RunRequest:
    """The run of `period` in the scheduled execution for business day `day`."""
    tags = execution_tags(ExecutionId.tick(day), trigger=Trigger.TICK)
    return dg.RunRequest(
        run_key=f"tick:{day.isoformat()}:{period}",
        job_name=PERIOD_JOBS[period].name,
        partition_key=window_containing(period, day).key,
        tags=tags,
    )


def last_ticked_day(instance: dg.DagsterInstance) -> date | None:
    """The newest day the daily tick launched (its daily run's partition), if any."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=PERIOD_JOBS[Period.DAILY].name, tags={TRIGGER_TAG: Trigger.TICK.value}
        ),
        limit=1,
    )
    key = runs[0].tags.get(PARTITION_TAG) if runs else None
    return date.fromisoformat(key) if key else None


LOOK_BACK = 10  # materializations of one partition searched for the last execution's


def _last_execution(instance: dg.DagsterInstance, asset: dg.AssetKey, key: str, day_end: float) -> str | None:
    """The execution of the newest materialization of the partition written after `day_end`
    by a run of an execution (not a lone run); None if there is none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=LOOK_BACK
    ).records
    for record in records:
        if record.timestamp < day_end:
            return None
        run = instance.get_run_by_id(record.run_id)
        execution_id = execution_id_of(run.tags) if run else None
        if execution_id is not None:
            return execution_id
    return None


def completed_by(
    instance: dg.DagsterInstance, engine: sa.Engine, day: date, calendar: Calendar = CALENDAR
) -> str | None:
    """The completed session of an execution that already covered `day`, if there is one.

    Each of the eight partitions containing `day` (four periods, two levels) must
    have been materialized after `day` ended (with the day's data complete), by the
    runs of one execution whose session (found by key in `sizeagg_executions`) completed.
    Later runs that belong to no execution (the demo's history runs, a lone launch in
    the UI) rewrite the same slices and do not undo that.
    """
    day_end = datetime.combine(day + timedelta(days=1), time(0), calendar.tz).timestamp()
    execution_ids: set[str | None] = set()
    for period in PERIODS:
        key = window_containing(period, day).key
        for asset in assets_of(period):
            execution_ids.add(_last_execution(instance, asset.key, key, day_end))
    execution_id = execution_ids.pop() if len(execution_ids) == 1 else None
    if execution_id is None:  # several executions, or a partition no execution wrote after the day
        return None
    with engine.connect() as conn:  # by key (sizeagg_executions), never a scan of the records
        session_id = sessions.session_for_execution(conn, execution_id)
        completed = (
            session_id is not None
            and sessions.get_session(conn, session_id).status == sessions.SessionStatus.COMPLETED
        )
    return session_id if completed else None


def days_to_launch(
    instance: dg.DagsterInstance, engine: sa.Engine, now: datetime, tick: time, calendar: Calendar = CALENDAR
) -> tuple[list[date], list[str]]:
    """The days this tick launches, and why the others in its catch-up span are skipped.

    The due day, and every day after the last ticked day (at most CATCH_UP_DAYS back);
    minus days before the first partition and days already completed.
    """
    due = due_day(now, tick, calendar)
    last = last_ticked_day(instance)
    first = due if last is None else max(last + timedelta(days=1), due - timedelta(days=CATCH_UP_DAYS - 1))
    days, skipped = [], []
    for offset in range(max((due - first).days, 0) + 1):
        day = min(first, due) + timedelta(days=offset)
        if day < calendar.start_date:
            skipped.append(f"{day} is before the first partition ({calendar.start_date})")
        elif session := completed_by(instance, engine, day, calendar):
            skipped.append(f"{day} already completed (session {session})")
        else:
            days.append(day)
    return days, skipped


def _build_tick(period: Period) -> dg.ScheduleDefinition:
    tick = operations().daily_tick
    at = tick or OFF_TICK
    when = f"{at:%H:%M} {CALENDAR.timezone}" if tick else "never (SIZEAGG_DAILY_TICK=off)"

    @dg.schedule(
        name=f"aggregation_tick_{period}",
        cron_schedule=f"{at.minute} {at.hour} * * *",
        execution_timezone=CALENDAR.timezone,
        job=PERIOD_JOBS[period],
        default_status=automation.SCHEDULE_RUNNING,
        description=(
            f"The daily tick of the {period} aggregates, every day at {when} (SIZEAGG_DAILY_TICK): "
            f"the {period} partition containing the previous business day, both levels, tagged "
            "sizeagg/execution=scheduled:<day> like the three other aggregation_tick_* schedules; the "
            "aggregation_gate sensor writes the session once all four ended. Catches up missed days "
            "(at most 7) and skips a day whose execution already completed."
        ),
    )
    def _tick(context: dg.ScheduleEvaluationContext, db: AppDatabase) -> dg.SkipReason | list[dg.RunRequest]:
        if operations().daily_tick is None:
            return dg.SkipReason("the daily tick is off (SIZEAGG_DAILY_TICK=off)")
        now = context.scheduled_execution_time or datetime.now(CALENDAR.tz)
        days, skipped = days_to_launch(context.instance, db.engine, now, at)
        if not days:
            return dg.SkipReason("; ".join(skipped) or "nothing due")
        return [tick_run_request(day, period) for day in days]

    return _tick


TICKS: dict[Period, dg.ScheduleDefinition] = {period: _build_tick(period) for period in PERIODS}
ticks = list(TICKS.values())  # what `load_from_defs_folder` collects
