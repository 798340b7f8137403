"""The morning capacity digest: one message a day about yesterday (docs/alerts.md).

Three parts:

* growth alerts by the origin's rule: a database whose daily size grew by at least
  `growth_percent` % **and** `growth_gb` GB against its latest earlier day at most
  `growth_days` days before (1 GB = 1,024 MB; the comparison is exact, in integers);
  critical from twice the percentage on;
* every database and instance the forecast puts at warning or critical: against its
  capacity limit, or, without one, reaching its threshold within the flag horizon;
* yesterday's sessions.

The first two are one list, sorted by severity, then by the size of the problem in
MB (how much a database grew; how far past its limit or threshold the forecast is
30 days out), at most `digest_max_lines` lines and "… and K more". Every read is
bounded by days, not by history.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from .alerts import Alert, Kind, Severity
from .schema import (
    capacity_forecasts,
    capacity_limit_forecasts,
    database_size_aggregations,
    instances,
    sync_instance_records,
    sync_sessions,
)
from .sessions import CATEGORY, SessionStatus
from .settings import Alerting

MB_PER_GB = 1024
REASON_CHARS = 160


@dataclass(frozen=True)
class Line:
    severity: Severity
    problem_mb: float  # the size of the problem: sorts lines of one severity
    text: str

    def __str__(self) -> str:
        return f"{self.severity.upper():<8} {self.text}"


def _names(conn: sa.Connection) -> dict[int, str]:
    return {i: n for i, n in conn.execute(sa.select(instances.c.id, instances.c.name))}


def growth_lines(conn: sa.Connection, day: date, settings: Alerting, names: dict[int, str]) -> list[Line]:
    """Databases whose daily size on `day` grew by the origin's rule."""
    table = database_size_aggregations
    rows = conn.execute(
        sa.select(table.c.instance_id, table.c.database_name, table.c.period_start, table.c.avg_size_mb)
        .where(
            table.c.period_type == "daily",
            table.c.period_start.between(day - timedelta(days=settings.growth_days), day),
        )
        .order_by(table.c.instance_id, table.c.database_name, table.c.period_start)
    ).all()
    latest: dict[tuple[int, str], tuple[date, int]] = {}  # the latest day before `day`
    lines = []
    for instance_id, database, start, size in rows:
        series = (instance_id, database)
        if start < day:
            latest[series] = (start, size)
            continue
        if series not in latest:
            continue
        base_day, base = latest[series]
        change = size - base
        percent_rule = change * 100 >= settings.growth_percent * base
        if base <= 0 or change <= 0 or not percent_rule or change < settings.growth_gb * MB_PER_GB:
            continue
        critical = change * 100 >= 2 * settings.growth_percent * base
        age = (day - base_day).days
        lines.append(
            Line(
                Severity.CRITICAL if critical else Severity.WARNING,
                change,
                f"growth   {names.get(instance_id, f'#{instance_id}')}/{database}: "
                f"+{change * 100 / base:.1f} % (+{change:,} MB) in {age} day{'s' if age > 1 else ''}, "
                f"{base:,} MB on {base_day} → {size:,} MB on {day}",
            )
        )
    return lines


def capacity_lines(conn: sa.Connection, day: date, names: dict[int, str]) -> tuple[list[Line], date | None]:
    """Series the latest forecast up to `day` puts at warning or critical; and its as_of."""
    limits, forecasts = capacity_limit_forecasts, capacity_forecasts
    as_of = conn.execute(sa.select(sa.func.max(limits.c.as_of)).where(limits.c.as_of <= day)).scalar()
    if as_of is None:
        return [], None
    same_series = sa.and_(
        forecasts.c.as_of == limits.c.as_of,
        forecasts.c.instance_id == limits.c.instance_id,
        sa.or_(
            forecasts.c.database_name == limits.c.database_name,
            sa.and_(forecasts.c.database_name.is_(None), limits.c.database_name.is_(None)),
        ),
    )
    rows = conn.execute(
        sa.select(
            limits,
            forecasts.c.threshold_mb,
            forecasts.c.days_until_threshold,
            forecasts.c.projected_30d_mb,
        )
        .join(forecasts, same_series)
        .where(limits.c.as_of == as_of, limits.c.severity != Severity.NORMAL.value)
    ).mappings()
    lines = []
    for row in rows:
        name = names.get(row["instance_id"], f"#{row['instance_id']}")
        what = f"{name}/{row['database_name']}" if row["database_name"] else f"{name} (instance total)"
        if row["limit_mb"] is None:
            reach = row["threshold_mb"]
            days = row["days_until_threshold"]
            text = f"capacity {what}: threshold {reach:,} MB in {days} days (no capacity limit set)"
        else:
            reach = row["limit_mb"]
            days = row["days_until_limit"]
            if days is None:
                when = "limit not in sight"
            elif days == 0:
                when = "at the limit"
            else:
                when = f"limit in {days} days ({row['interval_percent']} %: {_interval(row)})"
            text = (
                f"capacity {what}: {float(row['used_percent']):.1f} % of {row['limit_mb']:,} MB used; {when}"
            )
        lines.append(Line(Severity(row["severity"]), float(row["projected_30d_mb"] - reach), text))
    return lines, as_of


def _interval(row: sa.RowMapping) -> str:
    low, high = row["days_until_limit_low"], row["days_until_limit_high"]
    return f"{low}–{high} days" if high is not None else f"{low} days or later"


def session_lines(conn: sa.Connection, day: date, tz: ZoneInfo) -> list[str]:
    """The aggregation sessions that ended on business day `day`: counts, and each one that failed."""
    start = datetime.combine(day, time(), tz).astimezone(UTC)  # stored instants are UTC (SQLite: naive)
    sessions = sync_sessions.c
    rows = conn.execute(
        sa.select(sessions.session_id, sessions.status)
        .where(
            sessions.sync_category == CATEGORY,
            sessions.completed_at >= start,
            sessions.completed_at < start + timedelta(days=1),
        )
        .order_by(sessions.id)
    ).all()
    if not rows:
        return [f"Sessions that ended {day}: none (did the daily execution run?)"]
    counts = Counter(status for _, status in rows)
    order = [s.value for s in SessionStatus]
    text = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=order.index))
    lines = [f"Sessions that ended {day}: {text}"]
    for session_id, status in rows:
        if status in (SessionStatus.FAILED, SessionStatus.CANCELLED):
            record = conn.execute(
                sa.select(sync_instance_records.c.sync_details, sync_instance_records.c.error_message)
                .where(sync_instance_records.c.session_id == session_id)
                .limit(1)
            ).first()
            execution = (record.sync_details or {}).get("execution", session_id) if record else session_id
            reason = (record.error_message or "") if record else ""
            lines.append(f"- {status} {execution}: {reason[:REASON_CHARS]}")
    return lines


def compose(conn: sa.Connection, settings: Alerting, today: date, tz: ZoneInfo, link: str | None) -> Alert:
    """The digest sent on `today`, about yesterday."""
    day = today - timedelta(days=1)
    names = _names(conn)
    capacity, as_of = capacity_lines(conn, day, names)
    lines = growth_lines(conn, day, settings, names) + capacity
    lines.sort(key=lambda line: (-line.severity.rank, -line.problem_mb, line.text))
    shown = lines[: settings.digest_max_lines]
    body = [str(line) for line in shown]
    if len(lines) > len(shown):
        body.append(f"… and {len(lines) - len(shown)} more")
    if not lines:
        body.append("No growth alert, and nothing near its capacity limit.")
    forecast = f"the forecast as of {as_of}" if as_of else "no capacity forecast yet"
    rule = (
        f"growth ≥ {settings.growth_percent} % and ≥ {settings.growth_gb} GB against a baseline at most "
        f"{settings.growth_days} days old"
    )
    text = "\n".join(
        [
            f"Capacity digest for {day}",
            "",
            *body,
            "",
            *session_lines(conn, day, tz),
            "",
            f"Rules: {rule}; {forecast}.",
        ]
    )
    severity = max((line.severity for line in lines), key=lambda s: s.rank, default=Severity.NORMAL)
    counts = Counter(line.severity for line in lines)
    summary = (
        ", ".join(f"{counts[s]} {s}" for s in (Severity.CRITICAL, Severity.WARNING) if counts[s])
        or "all normal"
    )
    return Alert(
        kind=Kind.DIGEST,
        subject="capacity",
        day=today,
        severity=severity,
        title=f"capacity digest for {day}: {summary}",
        text=text,
        link=link,
    )
