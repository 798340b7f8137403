"""The forecast's job and its morning schedule."""

from datetime import timedelta

import dagster as dg

from .. import automation
from ..aggregates.partitions import CALENDAR
from .asset import capacity_forecast

capacity_forecast_job = dg.define_asset_job(
    "capacity_forecast_job",
    selection=[capacity_forecast],
    description="Capacity forecasts as of a day (or a range of days).",
)


@dg.schedule(
    cron_schedule="30 4 * * *",
    job=capacity_forecast_job,
    execution_timezone=CALENDAR.timezone,
    default_status=automation.RUNNING_SCHEDULE,
    description="Every morning, the forecast as of yesterday (after the 04:00 aggregation tick).",
)
def capacity_forecast_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = CALENDAR.today(context.scheduled_execution_time) - timedelta(days=1)
    return dg.RunRequest(run_key=f"forecast:{day}", partition_key=day.isoformat())
