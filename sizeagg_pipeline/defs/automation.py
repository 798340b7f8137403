"""Every piece of sizeagg's automation ships `RUNNING`: sensors and schedules.

Dagster's default for sensors and schedules is STOPPED, which on a fresh deployment
would silently disable the daily tick, every safety net that ends sessions, and the
housekeeping of Dagster's history. The decorators here are the only way sizeagg
declares a sensor (and a schedule that must run unattended).
"""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

RUNNING = dg.DefaultSensorStatus.RUNNING
SCHEDULE_RUNNING = dg.DefaultScheduleStatus.RUNNING


def sensor(name: str, interval: int, description: str, **kwargs: Any) -> Callable[..., dg.SensorDefinition]:
    """`dg.sensor`, RUNNING, evaluated at most every `interval` seconds."""
    return dg.sensor(
        name=name,
        minimum_interval_seconds=interval,
        default_status=RUNNING,
        description=description,
        **kwargs,
    )


def run_status_sensor(
    name: str, status: dg.DagsterRunStatus, jobs: Sequence[Any], interval: int, description: str
) -> Callable[..., dg.SensorDefinition]:
    """`dg.run_status_sensor` on `jobs` reaching `status`, RUNNING."""
    return dg.run_status_sensor(
        name=name,
        run_status=status,
        monitored_jobs=list(jobs),
        minimum_interval_seconds=interval,
        default_status=RUNNING,
        description=description,
    )


def schedule(
    name: str, cron: str, timezone: str, job: Any, description: str
) -> Callable[..., dg.ScheduleDefinition]:
    """`dg.schedule` of `job` at `cron` in `timezone`, RUNNING."""
    return dg.schedule(
        name=name,
        cron_schedule=cron,
        execution_timezone=timezone,
        job=job,
        default_status=SCHEDULE_RUNNING,
        description=description,
    )


def run_failure_sensor(name: str, interval: int, description: str) -> Callable[..., dg.SensorDefinition]:
    """`dg.run_failure_sensor` on every job of this code location, RUNNING."""
    return dg.run_failure_sensor(
        name=name,
        minimum_interval_seconds=interval,
        default_status=RUNNING,
        description=description,
    )
