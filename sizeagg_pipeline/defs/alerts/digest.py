"""The morning capacity digest: at SIZEAGG_DIGEST_AT (default 09:00) business time, once a day.

A sensor rather than a schedule: a daemon that was down at 09:00 still sends that
day's digest when it comes back, and the key `digest:capacity:<day>` in
capacity_alerts makes it one message however often the sensor evaluates.
"""

from datetime import datetime

import dagster as dg
import sqlalchemy as sa

from ...core import alerts, digest, notify
from ...core.alerts import Kind
from ...core.settings import Alerting, alerting, utc_now
from .. import automation
from ..aggregates.partitions import CALENDAR
from ..forecast.asset import capacity_forecast
from ..resources import AppDatabase

DIGEST_SUBJECT = "capacity"
EVERY_SECONDS = 60


def digest_tick(engine: sa.Engine, settings: Alerting, now: datetime) -> str:
    """Compose and send today's digest once its time has come; what happened, for the tick's log."""
    if settings.digest_at is None:
        return "the digest is off (SIZEAGG_DIGEST_AT=off)"
    local = now.astimezone(CALENDAR.tz)
    if local.time() < settings.digest_at:
        return f"today's digest is due at {settings.digest_at:%H:%M} {CALENDAR.timezone}"
    key = alerts.key_of(Kind.DIGEST, DIGEST_SUBJECT, local.date())
    with engine.connect() as conn:
        composed = (
            None
            if alerts.known(conn, [key])
            else digest.compose(conn, settings, local.date(), CALENDAR.tz, _link(settings))
        )
    if composed is not None:
        notify.raise_alerts(engine, settings, [composed], now)
    deliveries = notify.deliver_due(engine, settings, now, keys=[key])
    return "; ".join(str(d) for d in deliveries) or f"{key} was handled already"


def _link(settings: Alerting) -> str:
    return f"{settings.ui_url}/assets/{capacity_forecast.key.to_user_string()}"


def _digest_at_text() -> str:
    at = alerting().digest_at
    return at.strftime("%H:%M") if at else "(off)"


@automation.sensor(
    "capacity_digest",
    EVERY_SECONDS,
    f"Every day from {_digest_at_text()} {CALENDAR.timezone} (SIZEAGG_DIGEST_AT, 'off' "
    "disables it): one capacity digest about yesterday: growth alerts by the origin's rule "
    "(SIZEAGG_GROWTH_ALERT_*), every database and instance the forecast puts at warning or "
    "critical, and yesterday's sessions; by email and webhook, once a day (capacity_alerts).",
)
def capacity_digest(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SkipReason:
    return dg.SkipReason(digest_tick(db.engine, alerting(), utc_now()))
