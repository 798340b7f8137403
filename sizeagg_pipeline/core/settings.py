"""Deployment settings, read from the environment in one place.

Everything that differs between a laptop and production (where the application
database lives, the business time zone, the first partition) is an environment
variable with a default that makes the quick start work with nothing set.
"""

from __future__ import annotations

import difflib
import functools
import os
import zoneinfo
from dataclasses import dataclass, field
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
RAW_RETENTION_VAR = "SIZEAGG_RAW_RETENTION_MONTHS"
DAILY_RETENTION_VAR = "SIZEAGG_DAILY_RETENTION_MONTHS"
WEEKLY_RETENTION_VAR = "SIZEAGG_WEEKLY_RETENTION_MONTHS"
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


class BadSetting(ValueError):
    """An environment variable holds a value sizeagg cannot use; the message says which and what to set."""


def _check_time_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError (a path-like or empty key)
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        hint = f"did you mean {close[0]}?" if close else "set an IANA name such as Asia/Shanghai or UTC"
        raise BadSetting(f"{TIMEZONE_VAR}={name!r} is not a known IANA time zone: {hint}") from None


@functools.cache
def calendar() -> Calendar:
    """The business calendar of this process (read once: partitions are built from it)."""
    timezone = os.environ.get(TIMEZONE_VAR) or DEFAULT_TIMEZONE
    _check_time_zone(timezone)
    raw_start = os.environ.get(START_DATE_VAR) or DEFAULT_START_DATE
    try:
        start = date.fromisoformat(raw_start)
    except ValueError:
        raise BadSetting(
            f"{START_DATE_VAR}={raw_start!r} is not a YYYY-MM-DD date: set it to the first day "
            f"of a quarter, for example {DEFAULT_START_DATE}"
        ) from None
    if start.day != 1 or start.month not in (1, 4, 7, 10):
        # Quarterly partitions drop a partial first quarter, and mixed start dates
        # split single-run backfills (docs/design.md): all periods start together.
        quarter = date(start.year, start.month - (start.month - 1) % 3, 1)
        raise BadSetting(
            f"{START_DATE_VAR}={raw_start} is not the first day of a quarter: set it to "
            f"{quarter}, the first day of its quarter"
        )
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
        value = minimum - 1
    if value < minimum:
        raise BadSetting(
            f"{name}={raw!r} is not a whole number of at least {minimum}: set one, "
            f"or unset it for the default ({default})"
        )
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
            raise BadSetting(
                f"{DAILY_TICK_VAR}={raw_tick!r} is not a time of day: set HH:MM (business time), "
                "or off for no daily tick"
            ) from None
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


@dataclass(frozen=True)
class Retention:
    """What `retention_job` drops, in whole months before the current one (None: nothing)."""

    raw_months: int | None  # raw rows of both raw tables
    daily_months: int | None  # daily aggregates
    weekly_months: int | None  # weekly aggregates (monthly and quarterly are kept forever)


# The shortest retention each setting accepts, and why.
RETENTION_MINIMUMS = {
    # The quarter after a dropped month must have closed before its comparison with
    # that month is kept for good (core/retention.py): two quarters always suffice.
    RAW_RETENTION_VAR: (6, "two quarters, so that the quarter after a dropped month has closed"),
    DAILY_RETENTION_VAR: (3, "a quarter"),
    WEEKLY_RETENTION_VAR: (3, "a quarter"),
}


def _months_var(name: str) -> int | None:
    raw = (os.environ.get(name) or "off").strip()
    if raw.lower() == "off":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadSetting(f"{name}={raw!r} is not a whole number of months: give one, or `off`") from None
    minimum, why = RETENTION_MINIMUMS[name]
    if value < 0:
        raise BadSetting(f"{name}={value} is negative: give at least {minimum} months, or `off`")
    if value < minimum:
        raise BadSetting(f"{name}={value} is shorter than {why}: give at least {minimum} months, or `off`")
    return value


def retention() -> Retention:
    """The retention settings; read (and checked) each time the retention job starts.

    Off by default: sizeagg never deletes a collector's rows or its own aggregates
    unless told to.
    """
    return Retention(
        raw_months=_months_var(RAW_RETENTION_VAR),
        daily_months=_months_var(DAILY_RETENTION_VAR),
        weekly_months=_months_var(WEEKLY_RETENTION_VAR),
    )


# --------------------------------------------------------------------------- alerts

SMTP_HOST_VAR = "SIZEAGG_SMTP_HOST"
SMTP_PORT_VAR = "SIZEAGG_SMTP_PORT"
SMTP_SECURITY_VAR = "SIZEAGG_SMTP_SECURITY"
SMTP_USER_VAR = "SIZEAGG_SMTP_USER"
SMTP_PASSWORD_VAR = "SIZEAGG_SMTP_PASSWORD"
ALERT_FROM_VAR = "SIZEAGG_ALERT_FROM"
ALERT_TO_VAR = "SIZEAGG_ALERT_TO"
WEBHOOK_URL_VAR = "SIZEAGG_ALERT_WEBHOOK_URL"
WEBHOOK_FORMAT_VAR = "SIZEAGG_ALERT_WEBHOOK_FORMAT"
UI_URL_VAR = "SIZEAGG_UI_URL"
FRESHNESS_DEADLINE_VAR = "SIZEAGG_FRESHNESS_DEADLINE"
DIGEST_AT_VAR = "SIZEAGG_DIGEST_AT"
DIGEST_MAX_LINES_VAR = "SIZEAGG_DIGEST_MAX_LINES"
GROWTH_PERCENT_VAR = "SIZEAGG_GROWTH_ALERT_PERCENT"
GROWTH_GB_VAR = "SIZEAGG_GROWTH_ALERT_GB"
GROWTH_DAYS_VAR = "SIZEAGG_GROWTH_ALERT_DAYS"

SMTP_SECURITIES = ("starttls", "ssl", "none")
WEBHOOK_FORMATS = ("generic", "slack", "feishu", "dingtalk", "wecom")
# The submission port for STARTTLS (and a plain relay), the implicit-TLS port for ssl.
SMTP_DEFAULT_PORTS = {"starttls": 587, "none": 587, "ssl": 465}


@dataclass(frozen=True)
class Smtp:
    """Where alert mail goes. The password never appears in a repr, a log or run metadata."""

    host: str
    port: int
    security: str  # one of SMTP_SECURITIES
    user: str | None
    password: str | None = field(repr=False)
    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Webhook:
    """Where alert posts go. The URL carries the bot's token: it is a secret too."""

    url: str = field(repr=False)
    format: str  # one of WEBHOOK_FORMATS


@dataclass(frozen=True)
class Alerting:
    """Who is told, how, and about what (docs/alerts.md)."""

    smtp: Smtp | None  # None: no email
    webhook: Webhook | None  # None: no webhook
    ui_url: str  # base URL of the Dagster UI, for links in messages
    freshness_deadline: time  # business time by which yesterday's partitions must exist
    digest_at: time | None  # business time of the morning digest; None: no digest
    digest_max_lines: int
    growth_percent: int  # the origin's growth rule: ≥ this percent …
    growth_gb: int  # … and ≥ this many GB (1 GB = 1,024 MB) …
    growth_days: int  # … against a baseline at most this many days old

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("email", self.smtp), ("webhook", self.webhook)) if on)


def _time_var(name: str, default: str, *, off: bool = False) -> time | None:
    raw = os.environ.get(name) or default
    if off and raw.lower() == "off":
        return None
    try:
        return time.fromisoformat(raw)
    except ValueError:
        accepted = "a HH:MM time of day or off" if off else "a HH:MM time of day"
        raise BadSetting(f"{name}={raw!r} is not {accepted}") from None


def _choice_var(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (os.environ.get(name) or default).lower()
    if raw not in choices:
        raise BadSetting(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _http_url(name: str, value: str, *, secret: bool) -> str:
    if not value.startswith(("http://", "https://")):
        shown = "" if secret else f"={value!r}"
        raise BadSetting(f"{name}{shown} is not an http:// or https:// URL")
    return value


def _smtp() -> Smtp | None:
    env = os.environ
    host = env.get(SMTP_HOST_VAR, "").strip()
    if not host:
        stray = [name for name in (SMTP_USER_VAR, SMTP_PASSWORD_VAR, ALERT_TO_VAR) if env.get(name)]
        if stray:
            raise BadSetting(f"{stray[0]} is set but {SMTP_HOST_VAR} is not: no mail can be sent without it")
        return None
    security = _choice_var(SMTP_SECURITY_VAR, "starttls", SMTP_SECURITIES)
    port = _int_var(SMTP_PORT_VAR, SMTP_DEFAULT_PORTS[security], 1)
    if port > 65535:
        raise BadSetting(f"{SMTP_PORT_VAR}={port} is not a TCP port (1-65535)")
    user, password = env.get(SMTP_USER_VAR) or None, env.get(SMTP_PASSWORD_VAR) or None
    if bool(user) != bool(password):
        given, missing = (SMTP_USER_VAR, SMTP_PASSWORD_VAR) if user else (SMTP_PASSWORD_VAR, SMTP_USER_VAR)
        raise BadSetting(f"{given} is set but {missing} is not: SMTP login needs both")
    recipients = tuple(a.strip() for a in env.get(ALERT_TO_VAR, "").split(",") if a.strip())
    if not recipients:
        raise BadSetting(f"{ALERT_TO_VAR} is empty but {SMTP_HOST_VAR} is set: name at least one recipient")
    sender = env.get(ALERT_FROM_VAR) or (user if user and "@" in user else "")
    if not sender:
        raise BadSetting(
            f"{ALERT_FROM_VAR} is not set (and {SMTP_USER_VAR} is not an address to use instead)"
        )
    for name, address in [(ALERT_FROM_VAR, sender), *((ALERT_TO_VAR, a) for a in recipients)]:
        if "@" not in address:
            raise BadSetting(f"{name}: {address!r} is not an email address")
    return Smtp(host, port, security, user, password, sender, recipients)


def _webhook() -> Webhook | None:
    url = os.environ.get(WEBHOOK_URL_VAR, "").strip()
    if not url:
        if os.environ.get(WEBHOOK_FORMAT_VAR):
            raise BadSetting(f"{WEBHOOK_FORMAT_VAR} is set but {WEBHOOK_URL_VAR} is not")
        return None
    return Webhook(
        _http_url(WEBHOOK_URL_VAR, url, secret=True),
        _choice_var(WEBHOOK_FORMAT_VAR, "generic", WEBHOOK_FORMATS),
    )


def alerting() -> Alerting:
    """The alert settings, read from the environment on every call.

    Not cached: they are cheap to read, and a sensor then always sends with what the
    environment says now. The code location reads them once at load, so a bad value
    stops start-up with a message naming the variable.
    """
    deadline = _time_var(FRESHNESS_DEADLINE_VAR, "06:00")
    assert deadline is not None  # `off` is not accepted for the deadline
    return Alerting(
        smtp=_smtp(),
        webhook=_webhook(),
        ui_url=_http_url(
            UI_URL_VAR, os.environ.get(UI_URL_VAR) or "http://127.0.0.1:3000", secret=False
        ).rstrip("/"),
        freshness_deadline=deadline,
        digest_at=_time_var(DIGEST_AT_VAR, "09:00", off=True),
        digest_max_lines=_int_var(DIGEST_MAX_LINES_VAR, 50, 1),
        growth_percent=_int_var(GROWTH_PERCENT_VAR, 30, 1),
        growth_gb=_int_var(GROWTH_GB_VAR, 20, 0),
        growth_days=_int_var(GROWTH_DAYS_VAR, 3, 1),
    )


def check() -> None:
    """Read every setting now: the Dagster layer reads them at import time, where an error
    would surface as a traceback (raises `BadSetting`)."""
    calendar()
    operations()
    retention()
    alerting()
