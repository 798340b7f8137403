"""Late and corrected raw data: a cheap per-day fingerprint of the raw tables.

The collector may add rows for an old day, correct sizes, or delete rows after the
day was aggregated. Rather than rescanning history, the observation sensor asks the
database for one small row per recent day and raw table (row count, latest
`collected_at`, a checksum over the values and row ids) and compares the
fingerprints with the ones it saw last time. A changed day that was already
aggregated invalidates exactly these partitions: the daily, weekly, monthly and
quarterly windows containing it, and the window after each of them, whose
"previous window" comparison reads the changed day.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date

import sqlalchemy as sa

from .core.periods import PERIODS, Period, Window, window_containing
from .core.schema import database_size_stats, instance_size_stats

# Row checksums are weighted by the row id (mod a prime), so swapping values between
# two rows changes the sum; each term is reduced mod 2^31 - 1 so a day's sum never
# overflows a bigint.
_ID_MOD = 9973
_TERM_MOD = 2147483647


def _db_term() -> sa.ColumnElement:
    t = database_size_stats.c
    values = (
        t.size_mb * 3
        + sa.func.coalesce(t.data_size_mb, -1) * 5
        + sa.func.coalesce(t.log_size_mb, -1) * 7
        + t.instance_id * 11
        + sa.func.length(t.database_name) * 13
    )
    return ((t.id % _ID_MOD + 1) * values) % _TERM_MOD


def _instance_term() -> sa.ColumnElement:
    t = instance_size_stats.c
    values = (
        t.total_size_mb * 3
        + t.database_count * 5
        + sa.case((t.is_deleted.is_(sa.true()), 17), else_=0)
        + t.instance_id * 11
    )
    return ((t.id % _ID_MOD + 1) * values) % _TERM_MOD


def fingerprints(conn: sa.Connection, since: date) -> dict[str, str]:
    """Business day (ISO) → fingerprint of both raw tables' rows of that day, from `since` on.

    One GROUP BY per raw table over the days since `since` (an index range on
    collected_date); days without any raw row are absent.
    """
    parts: dict[str, list[str]] = defaultdict(list)
    for table, term in ((database_size_stats, _db_term()), (instance_size_stats, _instance_term())):
        rows = conn.execute(
            sa.select(
                table.c.collected_date,
                sa.func.count(),
                sa.func.max(table.c.collected_at),
                sa.func.sum(term),
            )
            .where(table.c.collected_date >= since)
            .group_by(table.c.collected_date)
        )
        for day, count, latest, checksum in rows:
            key = day.isoformat() if isinstance(day, date) else str(day)
            parts[key].append(f"{table.name}:{count}:{latest}:{checksum}")
    return {day: hashlib.sha1("|".join(p).encode()).hexdigest()[:16] for day, p in parts.items()}


def changed_days(before: Mapping[str, str], after: Mapping[str, str], since: date) -> list[date]:
    """Days from `since` on whose fingerprint differs (rows appeared, changed or vanished)."""
    days = {d for d in (*before, *after) if d >= since.isoformat()}
    return sorted(date.fromisoformat(d) for d in days if before.get(d) != after.get(d))


def affected_windows(
    days: Iterable[date], materialized: Mapping[Period, set[str]]
) -> dict[Period, list[Window]]:
    """The partitions to re-materialize for changed raw days.

    Only days that were already aggregated (their daily partition was materialized)
    count; a day not aggregated yet is the next tick's or a backfill's business.
    For each such day: the window of every period containing it and the next
    window (whose previous-window comparison it feeds), each only if it was
    materialized before (nothing new is computed).
    """
    result: dict[Period, set[Window]] = defaultdict(set)
    for day in days:
        if day.isoformat() not in materialized.get(Period.DAILY, set()):
            continue
        for period in PERIODS:
            window = window_containing(period, day)
            for candidate in (window, window.next()):
                if candidate.key in materialized.get(period, set()):
                    result[period].add(candidate)
    return {p: sorted(result[p]) for p in PERIODS if result.get(p)}


def contiguous(windows: list[Window]) -> list[tuple[Window, Window]]:
    """Sorted windows of one period as (first, last) runs of consecutive windows."""
    groups: list[tuple[Window, Window]] = []
    for window in sorted(windows):
        if groups and groups[-1][1].next() == window:
            groups[-1] = (groups[-1][0], window)
        else:
            groups.append((window, window))
    return groups
