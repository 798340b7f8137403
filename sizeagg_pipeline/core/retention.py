"""Retention: drop old raw rows and old daily/weekly aggregates, never data not yet summarised.

What goes is set in the environment (`core/settings.py`, off by default): raw rows of
both raw tables older than N months, daily aggregates older than M months, weekly
aggregates older than K months. Monthly and quarterly aggregates are kept forever:
once the raw rows are gone they are the history.

A raw month goes only when it is fully summarised: every daily (while daily
aggregates of that month are retained), weekly, monthly and quarterly window that
contains any of its days, and the window after each whose comparison reads it, was
written after the last change to the raw rows it reads. "Written after" is read from
the aggregates themselves, not from Dagster's records (a database restored, or written
by `sizeagg run` of another instance, is still judged right): the slice's rows must
count exactly the raw rows that are there now (Σ data_count: catches rows added or
deleted since), and its oldest `calculated_at` must be later than the newest
`collected_at` / `created_at` of the raw rows of the window and of the window before
(catches rows the collector rewrote). Windows that the current horizon
already keeps as they are cannot be rewritten any more and are not asked. Months go
oldest first; the first month that is not summarised stops the table there, and the
refusal names the month and each missing or stale partition.

How rows go, so that nothing waits long on the deletion:

1. the new horizon is recorded (`raw_horizons.purged_before`) and committed;
2. on PostgreSQL, each writer lock of the level is taken once in turn: a write that
   read the old horizon holds its lock until it commits, and every later write sees
   the new one (`core/aggregation.py`), so no write computes from rows being deleted;
3. PostgreSQL month partitions (`<table>_YYYY_MM`, entirely before the horizon) are
   detached `CONCURRENTLY` — a SHARE UPDATE EXCLUSIVE lock on the parent, which neither
   readers nor writers wait for — then dropped. `DETACH … CONCURRENTLY` cannot run
   inside a transaction block, so each statement runs on its own (autocommit); a
   partition marked by a comment first is found again and finished if the process died
   in between (`FINALIZE`, or the `DROP` of the detached table);
4. every other row before the horizon (SQLite, plain tables, a DEFAULT partition)
   is deleted in batches of `BATCH_ROWS`, each its own short transaction.

A crash at any point heals on the next run: the horizon was recorded first, so the
months behind it need no second check and their leftover rows simply go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from .aggregation import wait_for_writers
from .horizon import Horizon, read_horizon, record_purge
from .levels import LEVELS, Level
from .periods import PERIODS, Period, Window, window_containing
from .pg_partitions import month_start, next_month, partitioning
from .schema import instances, missing_tables, raw_horizons
from .settings import DAILY_RETENTION_VAR, RAW_RETENTION_VAR, WEEKLY_RETENTION_VAR, Retention, as_utc

BATCH_ROWS = 10_000  # rows per short delete transaction
_SECOND = timedelta(seconds=1)
DETACHED = "sizeagg retention: detached, to be dropped"  # comment on a partition being dropped

Log = Callable[[str], None]


class RetentionError(RuntimeError):
    """Retention cannot start (missing tables); nothing was deleted."""


def months_before(today: date, months: int) -> date:
    """The first day of the month `months` before today's: rows before it are "older than N months"."""
    index = today.year * 12 + today.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


# --------------------------------------------------------------------------- is a month summarised?


@dataclass(frozen=True)
class _Day:
    rows: int  # rows the aggregates count (the level's not-deleted filter)
    changed: datetime | None  # latest collected_at / created_at of any row that day


def _raw_days(conn: sa.Connection, level: Level, first: date, last: date) -> dict[date, _Day]:
    """Per collected_date of [first, last]: counted rows and the last change (one GROUP BY)."""
    raw = level.raw
    counted = sa.and_(sa.true(), *level.not_deleted)
    latest = [sa.func.max(raw.c.collected_at), sa.func.max(raw.c.created_at)]
    rows = conn.execute(
        sa.select(raw.c.collected_date, sa.func.sum(sa.case((counted, 1), else_=0)), *latest)
        .where(raw.c.collected_date.between(first, last))
        .group_by(raw.c.collected_date)
    )
    result = {}
    for day, count, collected, created in rows:
        stamps = [as_utc(s) for s in (collected, created) if s is not None]
        result[_as_day(day)] = _Day(int(count or 0), max(stamps) if stamps else None)
    return result


@dataclass(frozen=True)
class _Slice:
    rows: int
    counted: int  # Σ data_count
    calculated: datetime | None  # the oldest calculated_at


def _slices(conn: sa.Connection, level: Level, period: Period, first: date, last: date) -> dict[date, _Slice]:
    """Per period_start of [first, last] of one period type: rows, Σ data_count, oldest calculated_at."""
    target = level.target
    rows = conn.execute(
        sa.select(
            target.c.period_start,
            sa.func.count(),
            sa.func.sum(target.c.data_count),
            sa.func.min(target.c.calculated_at),
        )
        .where(target.c.period_type == period.value, target.c.period_start.between(first, last))
        .group_by(target.c.period_start)
    )
    return {
        _as_day(start): _Slice(count, int(counted or 0), as_utc(oldest) if oldest else None)
        for start, count, counted, oldest in rows
    }


def _as_day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _days(first: date, last: date) -> Iterable[date]:
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


def windows_reading(month: date, periods: Sequence[Period]) -> list[Window]:
    """The windows of `periods` containing any day of `month`, and the window after each run."""
    last_day = next_month(month) - timedelta(days=1)
    result = []
    for period in periods:
        window = window_containing(period, month)
        while window.start <= last_day:
            result.append(window)
            window = window.next()
        result.append(window)  # its previous window holds the month's last days
    return result


@dataclass
class _Evidence:
    """What the raw table and the aggregates say, over every window the candidate months need."""

    level: Level
    days: dict[date, _Day]
    slices: dict[Period, dict[date, _Slice]]

    def stale(self, window: Window) -> str | None:
        """Why `window`'s slice does not summarise the raw rows it reads now; None when it does."""
        raw = sum(self.days[d].rows for d in _days(window.start, window.end) if d in self.days)
        read = [self.days[d] for d in _days(window.previous().start, window.end) if d in self.days]
        changes = [d.changed for d in read if d.changed is not None]
        written = self.slices[window.period].get(window.start, _Slice(0, 0, None))
        partition = f"{self.level.asset_name(window.period)} {window.key}"
        if raw == 0 and written.rows == 0:
            return None
        if written.rows == 0:
            return f"{partition} never written ({raw} {self.level.counted} to summarise)"
        if written.counted != raw:
            return f"{partition} counts {written.counted} {self.level.counted}, the raw table has {raw}"
        # A whole second of slack: SQLite's CURRENT_TIMESTAMP (a collector's default) drops the fraction.
        if changes and (written.calculated is None or written.calculated < max(changes) + _SECOND):
            return (
                f"{partition} written {_stamp(written.calculated)}, before the last raw change "
                f"({_stamp(max(changes))})"
            )
        return None


def _stamp(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "never"


@dataclass(frozen=True)
class Refusal:
    """A raw month that stays, and the partitions that must be (re)materialized first."""

    raw_table: str
    month: date
    missing: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"kept {self.raw_table} {self.month:%Y-%m} and later months: not fully summarised — "
            f"materialize {'; '.join(self.missing)}"
        )


@dataclass
class RawPlan:
    """What retention does to one raw table."""

    level: Level
    horizon: Horizon  # before this run
    cutoff: date  # rows before it are older than the setting
    drop_before: date | None  # the new horizon; None: nothing goes
    months: list[date] = field(default_factory=list)  # months dropped (some may be behind the horizon)
    refusal: Refusal | None = None


def plan_raw(conn: sa.Connection, level: Level, cutoff: date, settings: Retention, today: date) -> RawPlan:
    """Which raw months before `cutoff` go: the oldest run of fully summarised months."""
    horizon = read_horizon(conn, level, recorded=True)
    plan = RawPlan(level, horizon, cutoff, None)
    earliest = horizon.earliest_raw_day
    if earliest is None or earliest >= cutoff:
        return plan
    months = []
    month = month_start(earliest)
    while month < cutoff:
        months.append(month)
        month = next_month(month)
    daily_cutoff = months_before(today, settings.daily_months) if settings.daily_months else None
    weekly_cutoff = months_before(today, settings.weekly_months) if settings.weekly_months else None

    def periods_of(month: date) -> list[Period]:
        return [
            p
            for p in PERIODS
            if not (p is Period.DAILY and daily_cutoff and month < daily_cutoff)
            and not (p is Period.WEEKLY and weekly_cutoff and month < weekly_cutoff)
        ]

    needed = {m: windows_reading(m, periods_of(m)) for m in months}
    every = [w for ws in needed.values() for w in ws]
    evidence = _Evidence(
        level,
        _raw_days(conn, level, min(w.previous().start for w in every), max(w.end for w in every)),
        {
            p: _slices(conn, level, p, min(w.start for w in every), max(w.start for w in every))
            for p in PERIODS
        },
    )
    reach = horizon.day or date.min  # the horizon, moving on as the months before it go
    for month in months:
        # A window the horizon already keeps cannot be rewritten: nothing to ask of it.
        missing = [
            text
            for window in needed[month]
            if window.previous().start >= reach and (text := evidence.stale(window)) is not None
        ]
        if missing:
            plan.refusal = Refusal(level.raw.name, month, tuple(missing))
            break
        plan.months.append(month)
        reach = max(reach, next_month(month))
    if plan.months:
        plan.drop_before = next_month(plan.months[-1])
    return plan


# --------------------------------------------------------------------------- dropping


@dataclass
class Dropped:
    """What went from one table."""

    table: str
    before: date
    rows: int = 0  # rows deleted in batches
    partitions: list[tuple[str, int]] = field(default_factory=list)  # (name, rows) dropped whole

    @property
    def total(self) -> int:
        return self.rows + sum(rows for _, rows in self.partitions)

    def __str__(self) -> str:
        parts = [f"{name} ({rows} rows)" for name, rows in self.partitions]
        if self.rows or not parts:
            parts.append(f"{self.rows} rows deleted in batches")
        return f"{self.table} before {self.before}: " + ", ".join(parts)


def delete_in_batches(engine: sa.Engine, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    """Delete the rows matching `where`, `BATCH_ROWS` at a time, each batch its own transaction."""
    total = 0
    while True:
        batch = sa.select(table.c.id).where(where).limit(BATCH_ROWS).scalar_subquery()
        with engine.begin() as conn:
            deleted = conn.execute(sa.delete(table).where(where, table.c.id.in_(batch))).rowcount
        total += deleted
        if deleted < BATCH_ROWS:
            return total


def _autocommit(engine: sa.Engine, statement: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(statement)


def _leftovers(engine: sa.Engine, table: str) -> tuple[list[str], list[str]]:
    """Partitions of `table` whose concurrent detach was interrupted, and tables detached but not dropped."""
    with engine.connect() as conn:
        pending = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:t) AND i.inhdetachpending"
            ),
            {"t": table},
        ).scalars()
        detached = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition "
                "AND obj_description(c.oid, 'pg_class') = :comment AND c.relname LIKE :prefix"
            ),
            {"comment": DETACHED, "prefix": f"{table}\\_%"},
        ).scalars()
        return list(pending), list(detached)


def drop_partitions(engine: sa.Engine, table: str, column: str, before: date) -> list[tuple[str, int]]:
    """PostgreSQL: detach (concurrently) and drop the partitions of `table` entirely before `before`.

    Only for a table range-partitioned on `column` alone without a DEFAULT partition
    (DETACH CONCURRENTLY refuses one); otherwise nothing, and the rows go in batches.
    """
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        layout = partitioning(conn, table)
    if layout is None or not layout.managed_on(column):
        return []
    old = {p.name for p in layout.partitions if p.upper is not None and p.upper <= before}
    pending, detached = _leftovers(engine, table)
    pending = [name for name in pending if name in old]
    for name in pending:  # the process died during DETACH … CONCURRENTLY
        _autocommit(engine, f'ALTER TABLE "{table}" DETACH PARTITION "{name}" FINALIZE')
    for name in [*pending, *detached]:
        _autocommit(engine, f'DROP TABLE IF EXISTS "{name}"')
    dropped = []
    for partition in layout.partitions:
        if partition.name in pending or partition.name not in old:
            continue
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f'SELECT count(*) FROM "{partition.name}"')).scalar_one()
        _autocommit(engine, f"COMMENT ON TABLE \"{partition.name}\" IS '{DETACHED}'")
        _autocommit(engine, f'ALTER TABLE "{table}" DETACH PARTITION "{partition.name}" CONCURRENTLY')
        _autocommit(engine, f'DROP TABLE "{partition.name}"')
        dropped.append((partition.name, int(rows)))
    return dropped


def drop_raw(engine: sa.Engine, level: Level, before: date) -> Dropped:
    """Delete every row of the level's raw table before `before` (its horizon, already recorded)."""
    wait_for_writers(engine, level)
    raw = level.raw
    partitions = drop_partitions(engine, raw.name, "collected_date", before)
    rows = delete_in_batches(engine, raw, raw.c.collected_date < before)
    return Dropped(raw.name, before, rows, partitions)


def drop_aggregates(engine: sa.Engine, level: Level, period: Period, before: date) -> Dropped:
    """Delete the level's `period` aggregate rows of windows starting before `before`."""
    target = level.target
    where = sa.and_(target.c.period_type == period.value, target.c.period_start < before)
    return Dropped(f"{target.name} {period}", before, rows=delete_in_batches(engine, target, where))


# --------------------------------------------------------------------------- one run


@dataclass
class RetentionReport:
    """What one retention run dropped, kept and why, and each raw table's horizon after it."""

    today: date
    settings: Retention
    raw: list[RawPlan] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    horizons: dict[str, Horizon] = field(default_factory=dict)  # level → after the run

    @property
    def refusals(self) -> list[Refusal]:
        return [p.refusal for p in self.raw if p.refusal is not None]

    def kept(self) -> list[str]:
        """What stays, and why."""
        lines = [str(r) for r in self.refusals]
        off = (
            ("raw rows", RAW_RETENTION_VAR, self.settings.raw_months),
            ("daily aggregates", DAILY_RETENTION_VAR, self.settings.daily_months),
            ("weekly aggregates", WEEKLY_RETENTION_VAR, self.settings.weekly_months),
        )
        lines += [f"{what}: all ({var} is off)" for what, var, months in off if months is None]
        lines.append("monthly and quarterly aggregates: all, always")
        return lines


def check_tables(engine: sa.Engine) -> None:
    tables = (instances, raw_horizons, *(t for level in LEVELS for t in (level.raw, level.target)))
    with engine.connect() as conn:
        missing = missing_tables(conn, tables)
    if missing:
        raise RetentionError(
            f"table(s) {', '.join(missing)} missing: run `sizeagg init-db` first; nothing was deleted"
        )


def apply_retention(engine: sa.Engine, settings: Retention, today: date, log: Log) -> RetentionReport:
    """Drop what `settings` say is older than their months, raw months only when summarised."""
    check_tables(engine)
    report = RetentionReport(today, settings)
    if settings.raw_months is not None:
        cutoff = months_before(today, settings.raw_months)
        for level in LEVELS:
            with engine.connect() as conn:
                plan = plan_raw(conn, level, cutoff, settings, today)
            report.raw.append(plan)
            if plan.refusal is not None:
                log(str(plan.refusal))
            if plan.drop_before is None:
                continue
            if plan.horizon.purged_before is None or plan.horizon.purged_before < plan.drop_before:
                with engine.begin() as conn:
                    record_purge(conn, level.raw.name, plan.drop_before)
            log(f"{level.raw.name}: horizon {plan.drop_before}; dropping older rows")
            report.dropped.append(drop_raw(engine, level, plan.drop_before))
    for period, months in ((Period.DAILY, settings.daily_months), (Period.WEEKLY, settings.weekly_months)):
        if months is None:
            continue
        for level in LEVELS:
            dropped = drop_aggregates(engine, level, period, months_before(today, months))
            if dropped.rows:
                log(str(dropped))
                report.dropped.append(dropped)
    with engine.connect() as conn:
        report.horizons = {level.name: read_horizon(conn, level, recorded=True) for level in LEVELS}
    return report
