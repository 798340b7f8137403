"""The one `Definitions` object of sizeagg."""

from __future__ import annotations

import os

import dagster as dg

from .assets import PERIOD_ASSETS, RAW_ASSETS
from .core.settings import DATABASE_URL_VAR, default_database_url
from .jobs import PERIOD_JOBS, aggregation_session_job
from .resources import AppDatabase
from .session_asset import aggregation_session

# The quick start runs with nothing configured: the embedded SQLite file.
os.environ.setdefault(DATABASE_URL_VAR, default_database_url())

defs = dg.Definitions(
    assets=[*RAW_ASSETS.values(), *PERIOD_ASSETS.values(), aggregation_session],
    jobs=[*PERIOD_JOBS.values(), aggregation_session_job],
    resources={"db": AppDatabase(url=dg.EnvVar(DATABASE_URL_VAR))},
    # Each step is one SQL transaction: a process per step buys nothing but spawn time.
    executor=dg.in_process_executor,
)
