"""Alerts and their history (docs/alerts.md): what sizeagg tells a person, once per key and day.

An alert has a kind, a subject and a business day; together they are its key, the
unique key of `capacity_alerts`. Recording an alert whose key exists only moves its
`last_seen_at`, so a sensor that re-evaluates, a daemon that restarts, or `sizeagg run`
and a sensor that both see one failed session, still produce one row and one message.
Delivery (`core/notify.py`) then works through the rows that are due.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .schema import capacity_alerts, sync_instance_records, sync_sessions
from .sessions import CATEGORY, SessionStatus, SessionSummary, summary_of


class Severity(StrEnum):
    """How loudly to tell: the alerts', the forecast's and the digest's one scale."""

    NORMAL = "normal"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Kind(StrEnum):
    SESSION = "session"  # a session ended failed or cancelled
    RUN = "run"  # a sizeagg run failed that no session reports
    CHECK = "check"  # an ERROR-severity asset check failed
    DEADLINE = "deadline"  # a partition was not materialized by the freshness deadline
    DIGEST = "digest"  # the morning capacity digest


class Status(StrEnum):
    PENDING = "pending"  # to be sent (again) at next_attempt_at
    SENDING = "sending"  # claimed by a sender until next_attempt_at (then due again)
    SENT = "sent"  # every channel took it
    FAILED = "failed"  # a channel still refused after the last attempt
    RECORDED = "recorded"  # no channel configured: kept for the history only


# Waits after failed attempts 1, 2 and 3; the 4th attempt is the last. A channel that
# took the alert is not sent it again.
RETRY_WAITS = (timedelta(seconds=10), timedelta(seconds=60), timedelta(seconds=300))
MAX_ATTEMPTS = len(RETRY_WAITS) + 1
# A sender holds a claimed alert this long; one that died meanwhile leaves it due again.
LEASE = timedelta(minutes=5)


def key_of(kind: Kind, subject: str, day: date) -> str:
    """The unique key of an alert: one message per kind, subject and business day."""
    return f"{kind}:{subject}:{day.isoformat()}"


@dataclass(frozen=True)
class Alert:
    kind: Kind
    subject: str  # what it is about: a session id, a run id, a check, the digest's day
    day: date  # the business day it belongs to (one message per key and day)
    severity: Severity
    title: str
    text: str
    link: str | None = None  # where to look in the Dagster UI

    @property
    def key(self) -> str:
        return key_of(self.kind, self.subject, self.day)

    def body(self) -> str:
        return f"{self.text}\n\n{self.link}" if self.link else self.text


def _insert(conn: sa.Connection) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(capacity_alerts)


def record(conn: sa.Connection, alert: Alert, now: datetime, channels: Collection[str]) -> bool:
    """Keep `alert` once: True when it is new (then it is due now), False when its key was seen."""
    insert = (
        _insert(conn)
        .values(
            key=alert.key,
            kind=alert.kind.value,
            subject=alert.subject[:300],
            day=alert.day,
            severity=alert.severity.value,
            title=alert.title[:300],
            message=alert.text,
            link=alert.link,
            status=(Status.PENDING if channels else Status.RECORDED).value,
            attempts=0,
            next_attempt_at=now if channels else None,
            outcome={} if channels else {"channels": "none configured"},
            first_seen_at=now,
            last_seen_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    if conn.execute(insert).rowcount == 1:
        return True
    conn.execute(
        sa.update(capacity_alerts).where(capacity_alerts.c.key == alert.key).values(last_seen_at=now)
    )
    return False


def known(conn: sa.Connection, keys: Collection[str]) -> set[str]:
    """Which of `keys` already have a row (spares building messages that would not be sent)."""
    if not keys:
        return set()
    table = capacity_alerts
    return set(conn.execute(sa.select(table.c.key).where(table.c.key.in_(list(keys)))).scalars())


def due(
    conn: sa.Connection, now: datetime, keys: Collection[str] | None = None, limit: int = 100
) -> list[int]:
    """Ids of alerts to (re)send now, oldest first; only those of `keys` when given."""
    table = capacity_alerts
    query = sa.select(table.c.id).where(
        table.c.status.in_([Status.PENDING.value, Status.SENDING.value]), table.c.next_attempt_at <= now
    )
    if keys is not None:
        query = query.where(table.c.key.in_(list(keys)))
    return list(conn.execute(query.order_by(table.c.id).limit(limit)).scalars())


def next_attempt(conn: sa.Connection, keys: Collection[str]) -> datetime | None:
    """When the earliest of `keys` that is still to be sent is due again (None: nothing left)."""
    table = capacity_alerts
    return conn.execute(
        sa.select(sa.func.min(table.c.next_attempt_at)).where(
            table.c.key.in_(list(keys)), table.c.status.in_([Status.PENDING.value, Status.SENDING.value])
        )
    ).scalar()


def claim(conn: sa.Connection, alert_id: int, now: datetime) -> sa.RowMapping | None:
    """Take one due alert for sending (one sender wins); None when another sender has it."""
    table = capacity_alerts
    taken = conn.execute(
        sa.update(table)
        .where(
            table.c.id == alert_id,
            table.c.status.in_([Status.PENDING.value, Status.SENDING.value]),
            table.c.next_attempt_at <= now,
        )
        .values(status=Status.SENDING.value, next_attempt_at=now + LEASE)
    ).rowcount
    if taken != 1:
        return None
    return conn.execute(sa.select(table).where(table.c.id == alert_id)).mappings().one()


def alert_of(row: Mapping[str, Any]) -> Alert:
    return Alert(
        kind=Kind(row["kind"]),
        subject=row["subject"],
        day=row["day"],
        severity=Severity(row["severity"]),
        title=row["title"],
        text=row["message"],
        link=row["link"],
    )


def finish(
    conn: sa.Connection, row: Mapping[str, Any], results: Mapping[str, str | None], now: datetime
) -> Status:
    """Store one attempt: `results` maps each channel tried to None (it took the alert) or its error."""
    attempt = row["attempts"] + 1
    outcome = dict(row["outcome"] or {})
    for channel, error in results.items():
        if error is None:
            outcome[channel] = {"status": Status.SENT.value, "attempt": attempt, "at": now.isoformat()}
        else:
            outcome[channel] = {"status": Status.FAILED.value, "attempt": attempt, "error": error}
    failing = [c for c, o in outcome.items() if isinstance(o, dict) and o.get("status") != Status.SENT]
    if not failing:
        status, next_at = Status.SENT, None
    elif attempt >= MAX_ATTEMPTS:
        status, next_at = Status.FAILED, None
    else:
        status, next_at = Status.PENDING, now + RETRY_WAITS[attempt - 1]
    delivered = any(error is None for error in results.values())
    conn.execute(
        sa.update(capacity_alerts)
        .where(capacity_alerts.c.id == row["id"])
        .values(
            status=status.value,
            attempts=attempt,
            next_attempt_at=next_at,
            outcome=outcome,
            sent_at=row["sent_at"] or (now if delivered else None),
        )
    )
    return status


def sent_channels(row: Mapping[str, Any]) -> set[str]:
    """Channels that already took this alert: a retry does not send it to them again."""
    outcome = row["outcome"] or {}
    return {c for c, o in outcome.items() if isinstance(o, dict) and o.get("status") == Status.SENT}


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class EndedSession:
    """A session that ended failed or cancelled, with what its records say."""

    summary: SessionSummary
    details: Mapping[str, Any]  # one record's sync_details: the execution and its run ids
    reason: str | None  # the records' error_message


def ended_badly(conn: sa.Connection, since: datetime, session_id: str | None = None) -> list[EndedSession]:
    """Aggregation sessions that ended failed or cancelled at or after `since` (or that one session)."""
    sessions = sync_sessions.c
    query = sa.select(sync_sessions).where(
        sessions.sync_category == CATEGORY,
        sessions.status.in_([SessionStatus.FAILED.value, SessionStatus.CANCELLED.value]),
    )
    query = (
        query.where(sessions.session_id == session_id)
        if session_id
        else query.where(sessions.completed_at >= since)
    )
    result = []
    for row in conn.execute(query.order_by(sessions.id)).mappings():
        record = conn.execute(
            sa.select(sync_instance_records.c.sync_details, sync_instance_records.c.error_message)
            .where(sync_instance_records.c.session_id == row["session_id"])
            .order_by(sync_instance_records.c.error_message.is_(None), sync_instance_records.c.id)
            .limit(1)
        ).first()
        details = (record.sync_details if record else None) or {}
        result.append(EndedSession(summary_of(row), details, record.error_message if record else None))
    return result
