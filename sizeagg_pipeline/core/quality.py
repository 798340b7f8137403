"""Data-quality queries behind the asset checks: set-based SQL, one scan per question.

Every function returns a `Finding`: pass/fail, counts for the check's metadata, and
a description that names the table, the rule and the first offending rows, so a
failed check in the UI says what to fix without opening a SQL console. Examples
are fetched only when something failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from .aggregation import EXAMPLES, Violations, find_violations, raw_span
from .levels import Level
from .periods import Window
from .schema import sync_instance_records, sync_sessions
from .sessions import CATEGORY, UNFINISHED, RecordStatus, SessionStatus


@dataclass(frozen=True)
class Finding:
    passed: bool
    description: str
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def _and_more(examples: Sequence[str], total: int) -> str:
    text = "; ".join(examples)
    return f"{text}; … and {total - len(examples)} more" if total > len(examples) else text


# --------------------------------------------------------------------------- raw rows


def _flag(predicate: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((predicate, 1), else_=0)), 0)


def raw_finding(violations: Violations, where: str) -> Finding:
    """A Finding of the validation rules, from the violations the aggregation's own rules found."""
    counts = {"rows_checked": violations.rows}
    counts |= {rule.replace(" ", "_"): count for rule, count in violations.counts.items()}
    examples = [e for shown in violations.examples.values() for e in shown]
    if violations.ok:
        return Finding(True, f"raw rows of {violations.table} ({where}) are valid", counts)
    return Finding(
        False,
        f"{violations.table} has invalid rows ({where}); the aggregates reading them are not written. "
        + violations.describe(),
        counts,
        examples,
    )


def raw_rows_valid(conn: sa.Connection, level: Level, first: date | None, last: date | None) -> Finding:
    """Raw rows of `level` with collected_date in [first, last] (all rows when None) break no rule."""
    where = "all rows" if first is None else f"collected_date {first}..{last}"
    return raw_finding(find_violations(conn, level, first, last), where)


# --------------------------------------------------------------------------- aggregates vs raw


def _windows_cte(windows: Sequence[Window]) -> sa.CTE:
    # A VALUES list, not a UNION ALL: SQLite caps compound SELECTs at 500 terms.
    values = sa.values(
        sa.column("period_start", sa.Date), sa.column("period_end", sa.Date), name="check_windows"
    ).data([(w.start, w.end) for w in windows])
    return values.cte("check_windows")


def _reconciled(level: Level, windows: Sequence[Window]) -> sa.Subquery:
    """One row per (window, group) present in the raw rows or in the aggregate slice.

    raw_n: raw rows (database level) or distinct days (instance level) in the window;
    agg_n: the sum of data_count over the aggregate rows of the group; agg_rows: how
    many aggregate rows the group has; has_raw: 1 when the group has raw data.
    """
    raw, target = level.raw, level.target
    w = _windows_cte(windows)
    keys = list(level.keys)
    raw_side = (
        sa.select(
            w.c.period_start,
            *(raw.c[k] for k in keys),
            level.data_count.label("raw_n"),
            sa.literal(0).label("agg_n"),
            sa.literal(0).label("agg_rows"),
            sa.literal(1).label("has_raw"),
        )
        .select_from(w.join(raw, raw.c.collected_date.between(w.c.period_start, w.c.period_end)))
        .where(raw_span(level, windows[0].start, windows[-1].end))
        .group_by(w.c.period_start, *(raw.c[k] for k in keys))
    )
    agg_side = sa.select(
        target.c.period_start,
        *(target.c[k] for k in keys),
        sa.literal(0).label("raw_n"),
        target.c.data_count.label("agg_n"),
        sa.literal(1).label("agg_rows"),
        sa.literal(0).label("has_raw"),
    ).where(
        target.c.period_type == windows[0].period.value,
        target.c.period_start.between(windows[0].start, windows[-1].start),
    )
    both = sa.union_all(raw_side, agg_side).subquery("both_sides")
    return (
        sa.select(
            both.c.period_start,
            *(both.c[k] for k in keys),
            sa.func.sum(both.c.raw_n).label("raw_n"),
            sa.func.sum(both.c.agg_n).label("agg_n"),
            sa.func.sum(both.c.agg_rows).label("agg_rows"),
            sa.func.max(both.c.has_raw).label("has_raw"),
        )
        .group_by(both.c.period_start, *(both.c[k] for k in keys))
        .subquery("reconciled")
    )


def materialized_windows(conn: sa.Connection, level: Level, windows: Sequence[Window]) -> list[Window]:
    """The windows among `windows` that have at least one aggregate row (were materialized).

    A check launched on its own looks at recent windows; one that was never
    materialized is a missing partition (the UI shows those), not a wrong row.
    """
    if not windows:
        return []
    target = level.target
    starts = set(
        conn.execute(
            sa.select(target.c.period_start)
            .distinct()
            .where(
                target.c.period_type == windows[0].period.value,
                target.c.period_start.between(windows[0].start, windows[-1].start),
            )
        ).scalars()
    )
    return [w for w in windows if w.start in starts]


def _group_text(level: Level, row: sa.RowMapping) -> str:
    parts = [f"{row['period_start']}", f"instance {row['instance_id']}"]
    parts += [f"database {row[k]!r}" for k in level.keys if k == "database_name"]
    return " ".join(parts)


def _scope(level: Level, windows: Sequence[Window]) -> str:
    return f"{level.target.name} {windows[0].period} {windows[0].start}..{windows[-1].end}"


def data_count_matches_raw(conn: sa.Connection, level: Level, windows: Sequence[Window]) -> Finding:
    """Every aggregate row's data_count equals the raw count of its group in its window.

    What is counted is the level's: raw rows, or days with a non-deleted row.
    """
    if not windows:
        return Finding(True, "no windows to check")
    r = _reconciled(level, windows)
    wrong = sa.and_(r.c.agg_rows == 1, r.c.agg_n != r.c.raw_n)
    totals = (
        conn.execute(
            sa.select(
                sa.func.count().label("groups"),
                _flag(r.c.agg_rows >= 1).label("rows_checked"),
                sa.func.coalesce(sa.func.sum(r.c.agg_n), 0).label("data_count_total"),
                sa.func.coalesce(sa.func.sum(r.c.raw_n), 0).label("raw_count_total"),
                _flag(wrong).label("mismatched_rows"),
            ).select_from(r)
        )
        .mappings()
        .one()
    )
    counts = {k: int(v) for k, v in totals.items() if k != "groups"}
    unit = level.counted
    if not counts["mismatched_rows"]:
        return Finding(
            True,
            f"{counts['rows_checked']} rows of {_scope(level, windows)}: data_count = {unit} in the window",
            counts,
        )
    offending = conn.execute(
        sa.select(r).where(wrong).order_by(r.c.period_start, *(r.c[k] for k in level.keys)).limit(EXAMPLES)
    ).mappings()
    examples = [f"{_group_text(level, x)}: data_count {x['agg_n']}, {unit} {x['raw_n']}" for x in offending]
    return Finding(
        False,
        f"{counts['mismatched_rows']} of {counts['rows_checked']} rows of {_scope(level, windows)} have a "
        f"data_count that differs from the {unit} in their window (the raw data changed after the "
        f"aggregate was written, or the aggregation is wrong; re-materialize the partition): "
        + _and_more(examples, counts["mismatched_rows"]),
        counts,
        examples,
    )


def one_row_per_group(conn: sa.Connection, level: Level, windows: Sequence[Window]) -> Finding:
    """Each group with raw data in a window has exactly one aggregate row; none without."""
    if not windows:
        return Finding(True, "no windows to check")
    r = _reconciled(level, windows)
    missing = sa.and_(r.c.has_raw == 1, r.c.agg_rows == 0)
    duplicated = r.c.agg_rows > 1
    stale = sa.and_(r.c.has_raw == 0, r.c.agg_rows >= 1)
    totals = (
        conn.execute(
            sa.select(
                _flag(r.c.has_raw == 1).label("groups_with_raw_data"),
                _flag(r.c.agg_rows >= 1).label("groups_with_rows"),
                _flag(missing).label("missing"),
                _flag(duplicated).label("duplicated"),
                _flag(stale).label("without_raw_data"),
            ).select_from(r)
        )
        .mappings()
        .one()
    )
    counts = {k: int(v) for k, v in totals.items()}
    group = level.name
    if not (counts["missing"] or counts["duplicated"] or counts["without_raw_data"]):
        return Finding(
            True,
            f"each of the {counts['groups_with_raw_data']} {group}-windows with raw data has exactly one row "
            f"in {_scope(level, windows)}",
            counts,
        )
    problems, examples = [], []
    for name, predicate, text in (
        ("missing", missing, f"{group}s with raw data but no row"),
        ("duplicated", duplicated, f"{group}s with more than one row"),
        ("without_raw_data", stale, "rows without raw data in their window"),
    ):
        if not counts[name]:
            continue
        offending = conn.execute(
            sa.select(r)
            .where(predicate)
            .order_by(r.c.period_start, *(r.c[k] for k in level.keys))
            .limit(EXAMPLES)
        ).mappings()
        quoted = [f"{_group_text(level, x)} ({x['agg_rows']} row(s))" for x in offending]
        examples += quoted
        problems.append(f"{counts[name]} {text}: {_and_more(quoted, counts[name])}")
    return Finding(
        False,
        f"{_scope(level, windows)} does not have exactly one row per {group} with raw data: "
        + " | ".join(problems),
        counts,
        examples,
    )


# --------------------------------------------------------------------------- sessions


# The newest sessions the counts check reads each time. A finished session never
# changes, so every one is checked while it is among the newest; reading them all
# would read every record of the history on every session step.
RECENT_SESSIONS = 100


def session_counts_add_up(conn: sa.Connection, recent: int = RECENT_SESSIONS) -> Finding:
    """The newest `recent` sessions: each finished one's counters match its records, all finished.

    For each session not `running`: successful + failed = total, total = number of
    records, successful = completed records, failed = failed records, and no record
    is still pending/running. The records are read through the session_id index.
    """
    s = sync_sessions.c
    newest = (
        sa.select(s.id, s.session_id)
        .where(s.sync_category == CATEGORY)
        .order_by(s.id.desc())
        .limit(recent)
        .subquery("newest")
    )
    rec = sync_instance_records.c
    per_session = (
        sa.select(
            rec.session_id,
            sa.func.count().label("records"),
            _flag(rec.status == RecordStatus.COMPLETED).label("completed"),
            _flag(rec.status == RecordStatus.FAILED).label("failed"),
            _flag(rec.status.in_(UNFINISHED)).label("unfinished"),
        )
        .where(rec.session_id.in_(sa.select(newest.c.session_id)))
        .group_by(rec.session_id)
        .subquery("per_session")
    )
    p = per_session.c
    total = sa.func.coalesce(s.total_instances, 0)
    ok = sa.func.coalesce(s.successful_instances, 0)
    bad = sa.func.coalesce(s.failed_instances, 0)
    records = sa.func.coalesce(p.records, 0)
    broken = sa.and_(
        s.status != SessionStatus.RUNNING,
        sa.or_(
            ok + bad != total,
            records != total,
            ok != sa.func.coalesce(p.completed, 0),
            bad != sa.func.coalesce(p.failed, 0),
            sa.func.coalesce(p.unfinished, 0) > 0,
        ),
    )
    source = sync_sessions.join(newest, newest.c.id == s.id).outerjoin(
        per_session, p.session_id == s.session_id
    )
    row = (
        conn.execute(
            sa.select(
                sa.func.count().label("sessions"),
                _flag(s.status != SessionStatus.RUNNING).label("finished_sessions"),
                _flag(broken).label("inconsistent_sessions"),
            )
            .select_from(source)
            .where(s.sync_category == CATEGORY)
        )
        .mappings()
        .one()
    )
    counts = {k: int(v) for k, v in row.items()}
    if not counts["inconsistent_sessions"]:
        return Finding(
            True,
            f"all {counts['finished_sessions']} finished sessions among the newest {recent}: successful + "
            "failed = total = records, and no record is left pending/running",
            counts,
        )
    offending = conn.execute(
        sa.select(
            s.session_id,
            s.status,
            s.total_instances,
            s.successful_instances,
            s.failed_instances,
            records.label("records"),
            sa.func.coalesce(p.completed, 0).label("completed"),
            sa.func.coalesce(p.failed, 0).label("failed"),
            sa.func.coalesce(p.unfinished, 0).label("unfinished"),
        )
        .select_from(source)
        .where(s.sync_category == CATEGORY, broken)
        .order_by(s.id.desc())
        .limit(EXAMPLES)
    ).mappings()
    examples = [
        f"{x['session_id']} ({x['status']}): total {x['total_instances']}, successful "
        f"{x['successful_instances']}, failed {x['failed_instances']}; records {x['records']} "
        f"({x['completed']} completed, {x['failed']} failed, {x['unfinished']} unfinished)"
        for x in offending
    ]
    return Finding(
        False,
        f"{counts['inconsistent_sessions']} finished session(s) whose counts do not add up: "
        + _and_more(examples, counts["inconsistent_sessions"]),
        counts,
        examples,
    )


def sessions_running_too_long(conn: sa.Connection, cutoff: datetime, max_runtime_seconds: int) -> Finding:
    """No session is still `running` with started_at before `cutoff` (now − max runtime)."""
    s = sync_sessions.c
    stuck = sa.and_(s.status == SessionStatus.RUNNING, s.started_at < cutoff)
    row = (
        conn.execute(
            sa.select(
                _flag(s.status == SessionStatus.RUNNING).label("running_sessions"),
                _flag(stuck).label("stuck_sessions"),
            ).where(s.sync_category == CATEGORY)
        )
        .mappings()
        .one()
    )
    counts = {k: int(v) for k, v in row.items()}
    limit = f"{max_runtime_seconds} s"
    if not counts["stuck_sessions"]:
        return Finding(
            True, f"{counts['running_sessions']} session(s) running, none for longer than {limit}", counts
        )
    offending = conn.execute(
        sa.select(s.session_id, s.started_at, s.total_instances)
        .where(s.sync_category == CATEGORY, stuck)
        .order_by(s.started_at)
        .limit(EXAMPLES)
    ).mappings()
    examples = [
        f"{x['session_id']} started {x['started_at']:%Y-%m-%d %H:%M:%S} UTC "
        f"({x['total_instances']} instances)"
        for x in offending
    ]
    return Finding(
        False,
        f"{counts['stuck_sessions']} session(s) still running after the maximum runtime of {limit} "
        "(their execution ended without finalising them; the janitor sensor should settle them): "
        + _and_more(examples, counts["stuck_sessions"]),
        counts,
        examples,
    )
