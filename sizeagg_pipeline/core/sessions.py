"""Session bookkeeping (docs/sessions.md): one row per execution, one record per active instance.

The rules that made the origin's sessions hang are designed out here:

* records are created once, for the instances active when the execution starts,
  and ``total_instances`` is their number, in the same transaction;
* counters are never incremented: they are recounted from the records' statuses,
  so ``successful + failed == total`` whenever no record is unfinished;
* every finaliser only touches rows that are still ``pending``/``running`` and
  locks the session row first, so running one twice (a retry, two sensors racing)
  changes nothing the second time.

The vocabulary of a session (sync types, statuses, an `Outcome`) is defined here
once; the Dagster layer decides outcomes and hands them to these functions.

An execution, its session and the run of its session step are linked through the
indexed keys of `sizeagg_executions`, written in the transaction that opens the
session: every lookup costs the same however many sessions and records exist.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .horizon import kept_in_slices
from .levels import LEVELS
from .periods import Period, key_range
from .schema import (
    Json,
    active_instances_clause,
    instances,
    sizeagg_executions,
    sync_instance_records,
    sync_sessions,
)
from .settings import utc_now

CATEGORY = "aggregation"
# The keys of a record's sync_details that name where its session came from.
EXECUTION_KEY = "execution"
RUN_IDS_KEY = "dagster_run_ids"
SESSION_RUN_KEY = "session_run_id"


class SyncType(StrEnum):
    """Who started an execution: a schedule or sensor, or a person (UI, CLI)."""

    SCHEDULED = "scheduled_task"
    MANUAL = "manual_task"


class SessionStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RecordStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


UNFINISHED = (RecordStatus.PENDING.value, RecordStatus.RUNNING.value)


@dataclass(frozen=True)
class Outcome:
    """How an execution that did not complete ends its session: failed or cancelled, and why."""

    status: SessionStatus
    reason: str

    def __post_init__(self) -> None:
        if self.status not in (SessionStatus.FAILED, SessionStatus.CANCELLED):
            raise ValueError(f"a session is finalised as failed or cancelled, not {self.status!r}")

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls(SessionStatus.FAILED, reason)

    @classmethod
    def cancelled(cls, reason: str) -> Outcome:
        return cls(SessionStatus.CANCELLED, reason)


# What an execution wrote: per period, the (first, last) period_start of each run.
Written = Mapping[Period, Sequence[tuple[date, date]]]
# Which levels ("database", "instance") an execution wrote per period (default: both).
WrittenLevels = Mapping[Period, Collection[str]]


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    sync_type: str
    status: str  # a SessionStatus value
    total_instances: int
    successful_instances: int
    failed_instances: int
    started_at: datetime | None
    completed_at: datetime | None

    def __str__(self) -> str:
        return (
            f"session {self.session_id} {self.status}: {self.total_instances} instances, "
            f"{self.successful_instances} succeeded, {self.failed_instances} failed"
        )


def open_session(
    conn: sa.Connection,
    *,
    sync_type: SyncType,
    details: Mapping[str, Any],
    created_by: int | None = None,
) -> str:
    """Create a `running` session and a `running` record per active instance."""
    session_id = str(uuid.uuid4())
    now = utc_now()
    conn.execute(
        sa.insert(sync_sessions).values(
            session_id=session_id,
            sync_type=sync_type.value,
            sync_category=CATEGORY,
            status=SessionStatus.RUNNING.value,
            started_at=now,
            total_instances=0,
            successful_instances=0,
            failed_instances=0,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
    )
    records = sa.select(
        sa.literal(session_id),
        instances.c.id,
        instances.c.name,
        sa.literal(CATEGORY),
        sa.literal(RecordStatus.RUNNING.value),
        sa.literal(now, sa.DateTime(timezone=True)),
        sa.literal(0),
        sa.literal(dict(details), Json),
    ).where(active_instances_clause())
    conn.execute(
        sa.insert(sync_instance_records).from_select(
            [
                "session_id",
                "instance_id",
                "instance_name",
                "sync_category",
                "status",
                "started_at",
                "items_synced",
                "sync_details",
            ],
            records,
        )
    )
    # The total is the number of records written, not a second look at `instances`
    # that a concurrent change could make disagree with them.
    record_count = (
        sa.select(sa.func.count())
        .select_from(sync_instance_records)
        .where(sync_instance_records.c.session_id == session_id)
        .scalar_subquery()
    )
    conn.execute(
        sa.update(sync_sessions)
        .where(sync_sessions.c.session_id == session_id)
        .values(total_instances=record_count)
    )
    _link(conn, session_id, details)
    return session_id


def _upsert(conn: sa.Connection) -> Any:
    """`INSERT … ON CONFLICT` on `sizeagg_executions`, for the connection's dialect."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(sizeagg_executions)


def _link(conn: sa.Connection, session_id: str, details: Mapping[str, Any]) -> None:
    """Link the session to the execution (and session-step run) its details name.

    An execution has one session; should its session step run again (a re-execution
    from the UI), the link follows the newest session.
    """
    execution_id = details.get(EXECUTION_KEY)
    if not execution_id:
        return
    links = sizeagg_executions.c
    values = {"session_id": session_id, "session_run_id": details.get(SESSION_RUN_KEY)}
    statement = _upsert(conn).values(execution_id=execution_id, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=[links.execution_id], set_=values))


def register_execution(conn: sa.Connection, execution_id: str, owner: str) -> None:
    """Record that the process `owner` runs `execution_id` in process, before its first run.

    If that process dies before the execution has a session, `unlinked_executions`
    finds it, so that the execution still gets one.
    """
    conn.execute(_upsert(conn).values(execution_id=execution_id, owner=owner).on_conflict_do_nothing())


def _lock_running(conn: sa.Connection, session_id: str) -> bool:
    """Lock the session row (PostgreSQL); True when it is still running."""
    status = conn.execute(
        sa.select(sync_sessions.c.status).where(sync_sessions.c.session_id == session_id).with_for_update()
    ).scalar_one_or_none()
    if status is None:
        raise LookupError(f"no sync session {session_id}")
    return status == SessionStatus.RUNNING


def _settle(conn: sa.Connection, session_id: str, status_on_failure: SessionStatus) -> None:
    """Recount the records and end the session."""
    records = sync_instance_records.c
    counts: dict[str, int] = {
        status: count
        for status, count in conn.execute(
            sa.select(records.status, sa.func.count())
            .where(records.session_id == session_id)
            .group_by(records.status)
        )
    }
    failed = counts.get(RecordStatus.FAILED, 0)
    now = utc_now()
    conn.execute(
        sa.update(sync_sessions)
        .where(sync_sessions.c.session_id == session_id, sync_sessions.c.status == SessionStatus.RUNNING)
        .values(
            successful_instances=counts.get(RecordStatus.COMPLETED, 0),
            failed_instances=failed,
            status=(SessionStatus.COMPLETED if failed == 0 else status_on_failure).value,
            completed_at=now,
            updated_at=now,
        )
    )


def items_by_instance(
    conn: sa.Connection, slices: Written, levels: WrittenLevels | None = None
) -> dict[int, dict[str, dict[str, int]]]:
    """Aggregate rows in these slices: instance → period → {level: rows}.

    `levels` (period → "database"/"instance") limits a period to the levels its runs
    wrote (a late-data run rewrites only the level whose raw table changed).
    """
    result: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    for level in LEVELS:
        table, key = level.target, f"{level.name}_rows"
        where = [
            sa.and_(table.c.period_type == period.value, table.c.period_start.between(a, b))
            for period, ranges in slices.items()
            if levels is None or level.name in levels.get(period, ())
            for a, b in ranges
        ]
        if not where:
            continue
        rows = conn.execute(
            sa.select(table.c.instance_id, table.c.period_type, sa.func.count())
            .where(sa.or_(*where))
            .group_by(table.c.instance_id, table.c.period_type)
        )
        for instance_id, period_type, count in rows:
            result[instance_id].setdefault(period_type, {})[key] = count
    return result


def complete_session(
    conn: sa.Connection,
    session_id: str,
    slices: Written,
    details: Mapping[str, Any],
    levels: WrittenLevels | None = None,
) -> SessionSummary:
    """Every period succeeded: complete each record with what was written for its instance.

    Slices kept because of the raw horizon (core/horizon.py) are still the instance's
    rows in the execution's slices; `sync_details["kept"]` names them and why.
    """
    if not _lock_running(conn, session_id):
        return get_session(conn, session_id)
    partitions = {
        period.value: [key_range(a.isoformat(), b.isoformat()) for a, b in ranges]
        for period, ranges in slices.items()
    }
    written = items_by_instance(conn, slices, levels)
    # Windows left as they were because their raw data is gone: named on every record.
    kept = [str(k) for k in kept_in_slices(conn, slices, levels)]
    records = sync_instance_records.c
    instance_ids = conn.execute(
        sa.select(records.instance_id).where(records.session_id == session_id, records.status.in_(UNFINISHED))
    ).scalars()
    now = utc_now()
    params = []
    for instance_id in instance_ids:
        per_period: dict[str, dict[str, Any]] = {}
        items = 0
        for period in slices:
            rows = written.get(instance_id, {}).get(period.value, {})
            database_rows, instance_rows = rows.get("database_rows", 0), rows.get("instance_rows", 0)
            per_period[period.value] = {
                "partitions": partitions[period.value],
                "database_rows": database_rows,
                "instance_rows": instance_rows,
            }
            items += database_rows + instance_rows
        instance_details = {**details, "periods": per_period, **({"kept": kept} if kept else {})}
        if items == 0:
            instance_details["note"] = "no raw data in any window of this execution: nothing to aggregate"
        params.append({"b_instance_id": instance_id, "b_items": items, "b_details": instance_details})
    if params:
        conn.execute(
            sa.update(sync_instance_records)
            .where(
                records.session_id == session_id,
                records.instance_id == sa.bindparam("b_instance_id"),
                sa.or_(*(records.status == s for s in UNFINISHED)),  # no IN: executemany
            )
            .values(
                status=RecordStatus.COMPLETED.value,
                items_synced=sa.bindparam("b_items"),
                sync_details=sa.bindparam("b_details", type_=Json),
                error_message=None,
                completed_at=now,
            ),
            params,
        )
    _settle(conn, session_id, SessionStatus.FAILED)
    return get_session(conn, session_id)


def finalise_session(conn: sa.Connection, session_id: str, outcome: Outcome) -> bool:
    """End a session that did not complete: `failed` or `cancelled`, with the reason.

    Returns False, and changes nothing, when the session had already ended.
    """
    if not _lock_running(conn, session_id):
        return False
    records = sync_instance_records.c
    conn.execute(
        sa.update(sync_instance_records)
        .where(records.session_id == session_id, records.status.in_(UNFINISHED))
        .values(
            status=RecordStatus.FAILED.value,
            items_synced=0,
            error_message=outcome.reason,
            completed_at=utc_now(),
        )
    )
    _settle(conn, session_id, outcome.status)
    return True


def record_failed_execution(
    conn: sa.Connection, *, sync_type: SyncType, outcome: Outcome, details: Mapping[str, Any]
) -> str:
    """The session of an execution whose session step never ran: born and ended with `outcome`."""
    session_id = open_session(conn, sync_type=sync_type, details=details)
    finalise_session(conn, session_id, outcome)
    return session_id


def lock_execution(conn: sa.Connection, execution_id: str) -> None:
    """Serialise writers of one execution's session until the transaction ends.

    Two sensors may both find "no session yet" for a failed execution; on
    PostgreSQL a transaction-scoped advisory lock makes the second one wait and then
    see the first one's session. SQLite transactions here are BEGIN IMMEDIATE, which
    already serialises every writer.
    """
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha1(execution_id.encode()).digest()[:8], "big", signed=True)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def session_for_execution(conn: sa.Connection, execution_id: str) -> str | None:
    """The session already written for an execution, if any (keeps failure writers idempotent)."""
    return conn.execute(
        sa.select(sizeagg_executions.c.session_id).where(sizeagg_executions.c.execution_id == execution_id)
    ).scalar_one_or_none()


def session_for_run(conn: sa.Connection, run_id: str) -> str | None:
    """The session a session-step run opened, if it got that far."""
    return conn.execute(
        sa.select(sizeagg_executions.c.session_id)
        .where(sizeagg_executions.c.session_run_id == run_id)
        .limit(1)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Unlinked:
    """An execution run in process by `owner` that has no session (yet)."""

    execution_id: str
    owner: str
    created_at: datetime


def unlinked_executions(conn: sa.Connection) -> list[Unlinked]:
    """Executions registered by a `sizeagg run` process that have no session yet.

    Few at any time (those in progress, and those whose process died): the index on
    `session_id` finds them without reading the rest.
    """
    links = sizeagg_executions.c
    rows = conn.execute(
        sa.select(links.execution_id, links.owner, links.created_at).where(
            links.session_id.is_(None), links.owner.isnot(None)
        )
    )
    return [Unlinked(execution_id, owner, created_at) for execution_id, owner, created_at in rows]


def unlinked_sessions() -> sa.Select[tuple[str, Any]]:
    """Aggregation sessions without a link, each with its first record's `sync_details`."""
    records = sync_instance_records.c
    first_details = (
        sa.select(records.sync_details)
        .where(records.session_id == sync_sessions.c.session_id)
        # `id + 0`, not `id`: PostgreSQL would walk the primary key from the start for
        # each session, filtering on session_id (7.8 min for 3 years of history on the
        # benchmark's machine, 2.6 s this way); an expression sends it to the session_id index.
        .order_by(records.id + 0)
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select(sync_sessions.c.session_id, first_details)
        .where(
            sync_sessions.c.sync_category == CATEGORY,
            ~sa.exists().where(sizeagg_executions.c.session_id == sync_sessions.c.session_id),
        )
        .order_by(sync_sessions.c.id)
    )


def link_existing_sessions(conn: sa.Connection) -> int:
    """Link the aggregation sessions written before `sizeagg_executions` existed; returns how many.

    Once, from `init-db`: each unlinked session's first record names its execution
    and session run. Reads one session's records at a time through the session_id index.
    """
    linked = 0
    for session_id, details in conn.execute(unlinked_sessions()).all():
        if isinstance(details, str):  # SQLite: the JSON text of a correlated subquery
            details = json.loads(details)
        if isinstance(details, dict) and details.get(EXECUTION_KEY):
            _link(conn, session_id, details)
            linked += 1
    return linked


def summary_of(row: sa.RowMapping) -> SessionSummary:
    return SessionSummary(
        session_id=row["session_id"],
        sync_type=row["sync_type"],
        status=row["status"],
        total_instances=row["total_instances"] or 0,
        successful_instances=row["successful_instances"] or 0,
        failed_instances=row["failed_instances"] or 0,
        started_at=row["started_at"],
        completed_at=row["completed_at"],
    )


def get_session(conn: sa.Connection, session_id: str) -> SessionSummary:
    row = (
        conn.execute(sa.select(sync_sessions).where(sync_sessions.c.session_id == session_id))
        .mappings()
        .one()
    )
    return summary_of(row)


def recent_sessions(conn: sa.Connection, limit: int = 20) -> list[SessionSummary]:
    rows = conn.execute(
        sa.select(sync_sessions)
        .where(sync_sessions.c.sync_category == CATEGORY)
        .order_by(sync_sessions.c.id.desc())
        .limit(limit)
    ).mappings()
    return [summary_of(row) for row in rows]


@dataclass(frozen=True)
class RunningSession:
    summary: SessionSummary
    execution_id: str | None
    session_run_id: str | None


def running_sessions(conn: sa.Connection) -> list[RunningSession]:
    """Aggregation sessions still `running`, with their execution and session-step run.

    The status index finds them; their links come from `sizeagg_executions` by key.
    Sessions of the origin's other sync categories are not sizeagg's to end.
    """
    links = sizeagg_executions.c
    rows = conn.execute(
        sa.select(sync_sessions, links.execution_id, links.session_run_id)
        .outerjoin(sizeagg_executions, links.session_id == sync_sessions.c.session_id)
        .where(sync_sessions.c.status == SessionStatus.RUNNING, sync_sessions.c.sync_category == CATEGORY)
    ).mappings()
    return [RunningSession(summary_of(row), row["execution_id"], row["session_run_id"]) for row in rows]


def runs_of_running_sessions(conn: sa.Connection) -> set[str]:
    """Every Dagster run id a running session's records name (its period runs and session run)."""
    run_ids: set[str] = set()
    records = sync_instance_records.c
    for running in running_sessions(conn):
        details = conn.execute(
            sa.select(records.sync_details).where(records.session_id == running.summary.session_id).limit(1)
        ).scalar_one_or_none()
        run_ids.update((details or {}).get(RUN_IDS_KEY, []))
        if running.session_run_id:
            run_ids.add(running.session_run_id)
    return run_ids
