"""Late and corrected raw data: a cheap per-day fingerprint of the raw tables.

The collector may add rows for an old day, correct sizes, or delete rows after the
day was aggregated. Rather than rescanning history, the observation sensor asks the
database for one small row per recent day and raw table (row count, latest
`collected_at`, a checksum over the values and row ids) and compares the
fingerprints with the ones it saw last time. A changed day that was already
aggregated invalidates exactly these partitions of its level (database_size_stats
feeds the database-level assets, instance_size_stats the instance-level ones): the
daily, weekly, monthly and quarterly windows containing it, and the window after
each of them, whose "previous window" comparison reads the changed day.

A purge changes the fingerprints of old days too (their rows vanish). Days before
the raw table's horizon, and windows whose previous window starts before it, are
never re-materialized: their slices are kept as they are (`core/horizon.py`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date

import sqlalchemy as sa

from .horizon import Horizon
from .levels import LEVELS
from .periods import PERIODS, Period, Window, window_containing

# level → business day (ISO) → fingerprint
Fingerprints = Mapping[str, Mapping[str, str]]
# period → window → levels to re-materialize
LateDataPlan = dict[Period, dict[Window, frozenset[str]]]


def fingerprints(conn: sa.Connection, since: date) -> dict[str, dict[str, str]]:
    """Per level (raw table), business day → fingerprint of that day's rows, from `since` on.

    One GROUP BY per raw table over the days since `since` (an index range on
    collected_date); days without any raw row are absent.
    """
    result: dict[str, dict[str, str]] = {}
    for level in LEVELS:
        table = level.raw
        rows = conn.execute(
            sa.select(
                table.c.collected_date,
                sa.func.count(),
                sa.func.max(table.c.collected_at),
                sa.func.sum(level.fingerprint),
            )
            .where(table.c.collected_date >= since)
            .group_by(table.c.collected_date)
        )
        result[level.name] = {
            (day.isoformat() if isinstance(day, date) else str(day)): hashlib.sha1(
                f"{count}:{latest}:{checksum}".encode()
            ).hexdigest()[:16]
            for day, count, latest, checksum in rows
        }
    return result


def changed_days(before: Fingerprints, after: Fingerprints, since: date) -> dict[str, list[date]]:
    """Per level, the days from `since` on whose fingerprint differs (rows appeared, changed, vanished)."""
    result = {}
    for name in (level.name for level in LEVELS):
        old, new = before.get(name, {}), after.get(name, {})
        days = {d for d in (*old, *new) if d >= since.isoformat() and old.get(d) != new.get(d)}
        if days:
            result[name] = sorted(date.fromisoformat(d) for d in days)
    return result


def affected_windows(
    changed: Mapping[str, Iterable[date]],
    materialized: Mapping[str, Mapping[Period, set[str]]],
    horizons: Mapping[str, Horizon] | None = None,
) -> LateDataPlan:
    """The partitions to re-materialize for changed raw days, per level.

    A change in a raw table touches only the aggregates of its level. Only days
    that level already aggregated (its daily partition was materialized) count; a
    day not aggregated yet is the next tick's or a backfill's business. For each
    such day: the window of every period containing it and the next window (whose
    previous-window comparison it feeds), each only if that level materialized it
    before (nothing new is computed), and none the level's horizon keeps (`horizons`,
    level → horizon; a purge is not late data).
    """
    result: dict[Period, dict[Window, set[str]]] = defaultdict(lambda: defaultdict(set))
    for level, days in changed.items():
        done = materialized.get(level, {})
        horizon = (horizons or {}).get(level)
        for day in days:
            if day.isoformat() not in done.get(Period.DAILY, set()):
                continue
            for period in PERIODS:
                window = window_containing(period, day)
                for candidate in (window, window.next()):
                    if horizon is not None and horizon.keeps(candidate):
                        continue
                    if candidate.key in done.get(period, set()):
                        result[period][candidate].add(level)
    return {
        p: {w: frozenset(levels) for w, levels in sorted(result[p].items())} for p in PERIODS if result.get(p)
    }


def run_groups(windows: Mapping[Window, frozenset[str]]) -> list[tuple[Window, Window, frozenset[str]]]:
    """Consecutive windows of one period needing the same levels, as (first, last, levels) runs."""
    groups: list[tuple[Window, Window, frozenset[str]]] = []
    for window in sorted(windows):
        levels = windows[window]
        if groups and groups[-1][1].next() == window and groups[-1][2] == levels:
            groups[-1] = (groups[-1][0], window, levels)
        else:
            groups.append((window, window, levels))
    return groups
