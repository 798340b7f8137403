"""Every piece of sizeagg's automation ships `RUNNING`: sensors and schedules.

Dagster's default for sensors is STOPPED, which on a fresh deployment would
silently disable the daily tick and every safety net that ends sessions. The
decorators here are the only way sizeagg declares a sensor.
"""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

RUNNING = dg.DefaultSensorStatus.RUNNING


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


# Schedules too: the daily tick and the forecast refresh run on a fresh deployment.
RUNNING_SCHEDULE = dg.DefaultScheduleStatus.RUNNING
