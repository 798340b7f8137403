"""Deployment settings, read from the environment in one place.

Everything that differs between a laptop and production (where the application
database lives, the business time zone, the first partition) is an environment
variable with a default that makes the quick start work with nothing set.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

DATABASE_URL_VAR = "SIZEAGG_DATABASE_URL"
TIMEZONE_VAR = "SIZEAGG_TIMEZONE"
START_DATE_VAR = "SIZEAGG_START_DATE"
DAILY_TICK_VAR = "SIZEAGG_DAILY_TICK"
SENSOR_INTERVAL_VAR = "SIZEAGG_SENSOR_INTERVAL_SECONDS"
JANITOR_INTERVAL_VAR = "SIZEAGG_JANITOR_INTERVAL_SECONDS"
OBSERVE_INTERVAL_VAR = "SIZEAGG_OBSERVE_INTERVAL_SECONDS"
MAX_RUNTIME_VAR = "SIZEAGG_SESSION_MAX_RUNTIME_SECONDS"
LATE_DATA_DAYS_VAR = "SIZEAGG_LATE_DATA_DAYS"
RUN_RETENTION_VAR = "SIZEAGG_RUN_RETENTION_DAYS"

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_START_DATE = "2024-01-01"


def state_dir() -> Path:
    """`.sizeagg/` in the working directory: the embedded database and DAGSTER_HOME."""
    return Path.cwd() / ".sizeagg"


def default_database_url() -> str:
    return f"sqlite:///{state_dir() / 'sizeagg.db'}"


def database_url() -> str:
    return os.environ.get(DATABASE_URL_VAR) or default_database_url()


def utc_now() -> datetime:
    """The current instant: what sensors and sessions call "now" (tests move it)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp as an aware UTC instant.

    SQLite returns timestamps naive (they are UTC); PostgreSQL returns timestamptz in
    the session's time zone.
    """
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Calendar:
    """The business clock: one time zone and one first day for every partition."""

    timezone: str
    start_date: date

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self, now: datetime | None = None) -> date:
        return (now or datetime.now(self.tz)).astimezone(self.tz).date()

    def yesterday(self, now: datetime | None = None) -> date:
        return self.today(now) - timedelta(days=1)


@functools.cache
def calendar() -> Calendar:
    """The business calendar of this process (read once: partitions are built from it)."""
    timezone = os.environ.get(TIMEZONE_VAR) or DEFAULT_TIMEZONE
    try:
        ZoneInfo(timezone)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError
        raise ValueError(f"{TIMEZONE_VAR}={timezone!r} is not a known IANA time zone") from exc
    raw_start = os.environ.get(START_DATE_VAR) or DEFAULT_START_DATE
    try:
        start = date.fromisoformat(raw_start)
    except ValueError as exc:
        raise ValueError(f"{START_DATE_VAR}={raw_start!r} is not a YYYY-MM-DD date") from exc
    if start.day != 1 or start.month not in (1, 4, 7, 10):
        # Quarterly partitions drop a partial first quarter, and mixed start dates
        # split single-run backfills (docs/design.md): all periods start together.
        raise ValueError(f"{START_DATE_VAR}={raw_start} must be the first day of a quarter")
    return Calendar(timezone=timezone, start_date=start)


@dataclass(frozen=True)
class Operations:
    """How the unattended pipeline behaves: when it ticks, how often sensors look."""

    daily_tick: time | None  # business time of the daily tick; None: no daily tick
    sensor_interval: int  # seconds between gate / failure-sensor evaluations
    janitor_interval: int  # seconds between janitor sweeps
    observe_interval: int  # seconds between observations of the raw tables
    session_max_runtime: int  # a running session older than this is finalised failed
    late_data_days: int  # how many recent days the raw-table observation covers
    run_retention_days: int  # Dagster runs older than this are deleted (defs/housekeeping/)


def _int_var(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}")
    return value


@functools.cache
def operations() -> Operations:
    """How the unattended pipeline behaves (read once per process)."""
    raw_tick = os.environ.get(DAILY_TICK_VAR) or "04:00"
    tick: time | None = None
    if raw_tick.lower() != "off":  # another scheduler drives sizeagg, or a test deployment
        try:
            tick = time.fromisoformat(raw_tick)
        except ValueError:
            raise ValueError(f"{DAILY_TICK_VAR}={raw_tick!r} is not a HH:MM time of day or off") from None
    return Operations(
        daily_tick=tick,
        sensor_interval=_int_var(SENSOR_INTERVAL_VAR, 30, 1),
        janitor_interval=_int_var(JANITOR_INTERVAL_VAR, 300, 1),
        observe_interval=_int_var(OBSERVE_INTERVAL_VAR, 300, 1),
        # Above run_monitoring.max_runtime_seconds (7200) in the shipped dagster.yaml,
        # so run monitoring ends a slow run before the janitor gives up on its session.
        session_max_runtime=_int_var(MAX_RUNTIME_VAR, 7800, 1),
        late_data_days=_int_var(LATE_DATA_DAYS_VAR, 120, 1),
        # At least 8: the backfill closer still reads the runs of the last 7 days' backfills.
        run_retention_days=_int_var(RUN_RETENTION_VAR, 90, 8),
    )
