"""The forecast's job and its morning schedule, on from the start like all of sizeagg's automation."""

from datetime import datetime, timedelta

import dagster as dg

from ...core.settings import operations
from .. import automation
from ..aggregates.partitions import CALENDAR
from .asset import capacity_forecast

# After the daily tick (04:00 unless SIZEAGG_DAILY_TICK says otherwise): its daily runs
# take minutes, and the digest (09:00) reads this forecast.
AFTER_TICK = timedelta(minutes=30)
_tick = operations().daily_tick
FORECAST_AT = (datetime(2000, 1, 1, *((_tick.hour, _tick.minute) if _tick else (4, 0))) + AFTER_TICK).time()

capacity_forecast_job = dg.define_asset_job(
    "capacity_forecast_job",
    selection=[capacity_forecast],
    description="Capacity forecasts as of a day (or a range of days).",
)


@dg.schedule(
    cron_schedule=f"{FORECAST_AT.minute} {FORECAST_AT.hour} * * *",
    job=capacity_forecast_job,
    execution_timezone=CALENDAR.timezone,
    default_status=automation.SCHEDULE_RUNNING,
    description=(
        f"Every day at {FORECAST_AT:%H:%M} {CALENDAR.timezone}, 30 minutes after the daily tick: "
        "the capacity forecast as of yesterday, which the morning digest reads."
    ),
)
def capacity_forecast_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = CALENDAR.today(context.scheduled_execution_time) - timedelta(days=1)
    return dg.RunRequest(run_key=f"forecast:{day}", partition_key=day.isoformat())
