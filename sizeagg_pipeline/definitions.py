"""The one `Definitions` object of sizeagg."""

from __future__ import annotations

import os

import dagster as dg

from .assets import PERIOD_ASSETS, RAW_ASSETS
from .checks import ALL_CHECKS, raw_table_checks_job
from .core.settings import DATABASE_URL_VAR, default_database_url
from .forecast import capacity_forecast, capacity_forecast_job, capacity_forecast_schedule
from .jobs import PERIOD_JOBS, aggregation_session_job
from .resources import AppDatabase
from .sensors import SENSORS
from .session_asset import aggregation_session

# The quick start runs with nothing configured: the embedded SQLite file.
os.environ.setdefault(DATABASE_URL_VAR, default_database_url())

defs = dg.Definitions(
    assets=[*RAW_ASSETS.values(), *PERIOD_ASSETS.values(), aggregation_session, capacity_forecast],
    asset_checks=ALL_CHECKS,
    jobs=[*PERIOD_JOBS.values(), aggregation_session_job, capacity_forecast_job, raw_table_checks_job],
    schedules=[capacity_forecast_schedule],
    sensors=SENSORS,
    resources={"db": AppDatabase(url=dg.EnvVar(DATABASE_URL_VAR))},
    # Each step is one SQL transaction: a process per step buys nothing but spawn time.
    executor=dg.in_process_executor,
)
