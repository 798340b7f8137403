"""The daily tick: every day at its business time, one execution for the previous business day.

It is a sensor, not a schedule, so that a daemon that was down catches up each
missed day (at most a week; older days are a backfill's job) with the same run
keys: a re-evaluated tick launches nothing twice.
"""

from datetime import date, datetime, time, timedelta

import dagster as dg

from ...core.periods import parse_date, windows_for_date
from ...core.sessions import SyncType
from ...core.settings import Calendar, operations, utc_now
from .. import automation
from ..aggregates.jobs import PERIOD_JOBS
from ..aggregates.partitions import CALENDAR
from ..sessions.vocabulary import ExecutionId, Trigger, execution_tags

CATCH_UP_DAYS = 7  # a daemon down for longer leaves older days to a backfill


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
    tags = execution_tags(ExecutionId.tick(day), SyncType.SCHEDULED, trigger=Trigger.TICK, day=day)
    return [
        dg.RunRequest(
            run_key=f"tick:{day.isoformat()}:{period}",
            job_name=PERIOD_JOBS[period].name,
            partition_key=window.key,
            tags=tags,
        )
        for period, window in windows_for_date(day).items()
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


def _tick_text() -> str:
    tick = operations().daily_tick
    return tick.strftime("%H:%M") if tick else "(off)"


@automation.sensor(
    "daily_aggregation_tick",
    min(operations().sensor_interval, 60),
    f"Every day at {_tick_text()} {CALENDAR.timezone} (SIZEAGG_DAILY_TICK, 'off' disables it): one "
    "aggregation execution for the previous business day: its daily partition and the "
    "weekly, monthly and quarterly partitions containing it, both levels. Runs are "
    "tagged sizeagg/execution=scheduled:<day>; the gate then writes the session.",
    jobs=list(PERIOD_JOBS.values()),
)
def daily_aggregation_tick(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    tick = operations().daily_tick
    if tick is None:
        return dg.SensorResult(skip_reason="the daily tick is off (SIZEAGG_DAILY_TICK=off)")
    return daily_tick(utc_now(), context.cursor, tick)
