"""Aggregation math of contract §3, as set-based SQL that the database runs.

One call writes one contiguous run of windows of one period type (a partition or
a partition range) for one level, atomically:

1. one scan of the raw rows of every window plus the window before the first
   groups them into exact sums, counts, minima and maxima (a temp table);
2. validation reads those groups, not the raw rows again: a negative minimum, a
   NULL, or an instance id that ``instances`` does not know fails the write;
3. each window's groups are joined to the previous window's groups and upserted
   (``INSERT … ON CONFLICT``), every value computed from exact integer sums;
4. rows of the slice that this write did not touch are deleted.

Exact arithmetic without floats: a mean is ``sum / count``, so with integer
division (which both SQLite and PostgreSQL truncate toward zero) ``floor(mean)``
of non-negative sizes is ``sum / count``; ``trunc(cur − prev)`` is
``(S1·n2 − S2·n1) / (n1·n2)``; and a percentage is rounded half away from zero
on the exact rational by integer arithmetic in hundredths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .periods import Period, Window
from .pg_partitions import MissingPartition, ensure_month_partitions, require_partitions
from .schema import (
    PERCENT_LIMIT_HUNDREDTHS,
    database_size_aggregations,
    database_size_stats,
    instance_size_aggregations,
    instance_size_stats,
    instances,
    missing_tables,
)

GROUPS_TABLE = "sizeagg_groups"
WRITE_LOCK_CLASS = 0x5A6A_0002  # advisory-lock namespace: one writer per table and period type
EXAMPLES = 5  # offending rows quoted in a validation error


class InvalidRawData(ValueError):
    """Raw rows break a validation rule of contract §3.3; nothing was written."""


class MissingTable(RuntimeError):
    """A table the aggregation reads or writes does not exist."""


class MissingUniqueKey(RuntimeError):
    """An existing aggregate table lacks the unique key the upsert's ON CONFLICT needs."""


@dataclass(frozen=True)
class Level:
    """Database level or instance level: which raw table feeds which aggregate table."""

    name: str
    raw: sa.Table
    target: sa.Table
    keys: tuple[str, ...]  # group keys besides the period
    sizes: tuple[str, ...]  # validated non-negative columns
    required: tuple[str, ...]  # columns that must not be NULL

    def asset_name(self, period: Period) -> str:
        return f"{self.name}_size_{period}"


DATABASE = Level(
    name="database",
    raw=database_size_stats,
    target=database_size_aggregations,
    keys=("instance_id", "database_name"),
    sizes=("size_mb", "data_size_mb", "log_size_mb"),
    required=("size_mb",),
)
INSTANCE = Level(
    name="instance",
    raw=instance_size_stats,
    target=instance_size_aggregations,
    keys=("instance_id",),
    sizes=("total_size_mb", "database_count"),
    required=("total_size_mb", "database_count"),
)
LEVELS = (DATABASE, INSTANCE)


@dataclass(frozen=True)
class WriteResult:
    level: str
    period: Period
    first: Window
    last: Window
    inserted: int
    updated: int
    deleted: int
    instances: int

    @property
    def rows(self) -> int:
        return self.inserted + self.updated

    @property
    def window_text(self) -> str:
        return f"{self.first.start}..{self.last.end}"


# --------------------------------------------------------------------------- SQL pieces


def _date(value: object, typed: bool) -> sa.ColumnElement:
    """A date constant of the windows CTE.

    CREATE TABLE AS is DDL, so its constants are rendered inline: PostgreSQL reads a
    bare '2026-01-05' in a UNION as text (and `date >= text` fails), hence the CAST
    there (`typed`); SQLite keeps dates as ISO text, where a CAST would make a number.
    """
    literal = sa.literal(value, sa.Date)
    return sa.cast(literal, sa.Date) if typed else literal


def _windows_cte(windows: Sequence[Window], typed: bool = False) -> sa.CTE:
    """(period_start, period_end, prev_start) for the windows and the one before them."""
    all_windows = [windows[0].previous(), *windows]
    rows = [
        sa.select(
            _date(w.start, typed).label("period_start"),
            _date(w.end, typed).label("period_end"),
            _date(w.previous().start, typed).label("prev_start"),
        )
        for w in all_windows
    ]
    return sa.union_all(*rows).cte("windows")


def _bigint_sum(column: sa.ColumnElement) -> sa.ColumnElement:
    # PostgreSQL's sum(bigint) is numeric; integer division needs a bigint back.
    return sa.cast(sa.func.sum(column), sa.BigInteger)


def _groups_select(level: Level, windows: Sequence[Window], dialect: str = "sqlite") -> sa.Select:
    """One scan: exact per-window sums, counts, minima and maxima of every group."""
    raw = level.raw
    w = _windows_cte(windows, typed=dialect == "postgresql")
    columns: list[sa.ColumnElement] = [
        w.c.period_start,
        w.c.period_end,
        w.c.prev_start,
        *(raw.c[k] for k in level.keys),
        sa.func.count().label("n"),
    ]
    for name in level.sizes:
        col = raw.c[name]
        columns += [
            _bigint_sum(col).label(f"{name}_sum"),
            sa.func.count(col).label(f"{name}_n"),
            sa.func.min(col).label(f"{name}_min"),
            sa.func.max(col).label(f"{name}_max"),
        ]
    stmt = sa.select(*columns).select_from(
        w.join(raw, raw.c.collected_date.between(w.c.period_start, w.c.period_end))
    )
    if level is INSTANCE:
        stmt = stmt.where(sa.func.coalesce(raw.c.is_deleted, sa.false()) == sa.false())
    return stmt.group_by(w.c.period_start, w.c.period_end, w.c.prev_start, *level.keys)


def _round_half_away(numerator: sa.ColumnElement, denominator: sa.ColumnElement) -> sa.ColumnElement:
    """round(numerator / denominator) half away from zero; denominator > 0."""
    return sa.case(
        (numerator >= 0, (2 * numerator + denominator) // (2 * denominator)),
        else_=-((-2 * numerator + denominator) // (2 * denominator)),
    )


def _percent_hundredths(diff: sa.ColumnElement, base: sa.ColumnElement) -> sa.ColumnElement:
    """round2(diff / base × 100) in hundredths, clamped to the numeric(10,2) range."""
    h = _round_half_away(diff * 10000, base)
    return sa.case(
        (h > PERCENT_LIMIT_HUNDREDTHS, PERCENT_LIMIT_HUNDREDTHS),
        (h < -PERCENT_LIMIT_HUNDREDTHS, -PERCENT_LIMIT_HUNDREDTHS),
        else_=h,
    )


def _as_percent(hundredths: sa.ColumnElement) -> sa.ColumnElement:
    # 100.0 is numeric on PostgreSQL (exact) and real on SQLite (nearest double).
    return hundredths / sa.literal_column("100.0")


@dataclass(frozen=True)
class _Change:
    """Comparison of one measure between a window (cur) and the previous (prev).

    With S the sums and n the counts of non-NULL values, cur − prev is
    (S1·n2 − S2·n1) / (n1·n2) and (cur − prev) / prev is (S1·n2 − S2·n1) / (n1·S2).
    """

    s1: sa.ColumnElement
    n1: sa.ColumnElement
    s2: sa.ColumnElement
    n2: sa.ColumnElement

    @property
    def diff(self) -> sa.ColumnElement:
        return self.s1 * self.n2 - self.s2 * self.n1

    @property
    def mb(self) -> sa.ColumnElement:
        return self.diff // (self.n1 * self.n2)

    @property
    def hundredths(self) -> sa.ColumnElement:
        """Percentage in hundredths; 0 when the previous mean is ≤ 0."""
        return sa.case((self.s2 <= 0, 0), else_=_percent_hundredths(self.diff, self.n1 * self.s2))


def _database_values(cur: sa.Table, prev: sa.Table) -> dict[str, sa.ColumnElement]:
    no_prev = prev.c.n.is_(None)
    values: dict[str, sa.ColumnElement] = {
        "avg_size_mb": cur.c.size_mb_sum // cur.c.n,
        "max_size_mb": cur.c.size_mb_max,
        "min_size_mb": cur.c.size_mb_min,
        "data_count": cur.c.n,
    }
    for kind in ("data", "log"):
        col = f"{kind}_size_mb"
        has = cur.c[f"{col}_n"] > 0
        values[f"avg_{col}"] = sa.case((has, cur.c[f"{col}_sum"] // cur.c[f"{col}_n"]))
        values[f"max_{col}"] = cur.c[f"{col}_max"]
        values[f"min_{col}"] = cur.c[f"{col}_min"]
    size = _Change(cur.c.size_mb_sum, cur.c.n, prev.c.size_mb_sum, prev.c.n)
    size_percent = sa.case((no_prev, 0), else_=_as_percent(size.hundredths))
    values["size_change_mb"] = sa.case((no_prev, 0), else_=size.mb)
    values["size_change_percent"] = size_percent
    for kind in ("data", "log"):
        col = f"{kind}_size_mb"
        change = _Change(cur.c[f"{col}_sum"], cur.c[f"{col}_n"], prev.c[f"{col}_sum"], prev.c[f"{col}_n"])
        has_cur = cur.c[f"{col}_n"] > 0
        both = sa.and_(has_cur, prev.c[f"{col}_n"] > 0)
        values[f"{kind}_size_change_mb"] = sa.case((no_prev, sa.case((has_cur, 0))), (both, change.mb))
        values[f"{kind}_size_change_percent"] = sa.case(
            (no_prev, sa.case((has_cur, 0))), (both, _as_percent(change.hundredths))
        )
    values["growth_rate"] = size_percent
    return values


def _instance_values(cur: sa.Table, prev: sa.Table) -> dict[str, sa.ColumnElement]:
    no_prev = prev.c.n.is_(None)
    total = _Change(cur.c.total_size_mb_sum, cur.c.n, prev.c.total_size_mb_sum, prev.c.n)
    count = _Change(cur.c.database_count_sum, cur.c.n, prev.c.database_count_sum, prev.c.n)
    growth = sa.case((no_prev, 0), else_=total.hundredths)
    return {
        "total_size_mb": cur.c.total_size_mb_sum // cur.c.n,
        "avg_size_mb": sa.case(
            (cur.c.database_count_sum == 0, 0),
            else_=cur.c.total_size_mb_sum // cur.c.database_count_sum,
        ),
        "max_size_mb": cur.c.total_size_mb_max,
        "min_size_mb": cur.c.total_size_mb_min,
        "data_count": cur.c.n,
        "database_count": cur.c.database_count_sum // cur.c.n,
        "avg_database_count": _as_percent(_round_half_away(cur.c.database_count_sum * 100, cur.c.n)),
        "max_database_count": cur.c.database_count_max,
        "min_database_count": cur.c.database_count_min,
        "total_size_change_mb": sa.case((no_prev, 0), else_=total.mb),
        "total_size_change_percent": _as_percent(growth),
        "database_count_change": sa.case((no_prev, 0), else_=count.mb),
        "database_count_change_percent": sa.case((no_prev, 0), else_=_as_percent(count.hundredths)),
        "growth_rate": _as_percent(growth),
        # Decided on the stored (rounded) growth rate: +5.004 % is 5.00, stable.
        "trend_direction": sa.case((growth > 500, "growing"), (growth < -500, "shrinking"), else_="stable"),
    }


def _insert(conn: sa.Connection, table: sa.Table):  # type: ignore[no-untyped-def]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


# --------------------------------------------------------------------------- validation


def _rule_predicates(level: Level) -> list[tuple[str, sa.ColumnElement[bool]]]:
    raw = level.raw
    rules: list[tuple[str, sa.ColumnElement[bool]]] = [
        (f"negative {name}", raw.c[name] < 0) for name in level.sizes
    ]
    rules += [(f"NULL {name}", raw.c[name].is_(None)) for name in level.required]
    known = sa.select(instances.c.id).where(instances.c.id == raw.c.instance_id).exists()
    rules.append(("unknown instance_id", ~known))
    return rules


def _violations_in_groups(conn: sa.Connection, level: Level, groups: sa.Table) -> bool:
    """Cheap test on the grouped rows: does any raw row break a rule?"""
    g = groups.c
    broken = [g[f"{name}_min"] < 0 for name in level.sizes]
    broken += [g[f"{name}_n"] < g.n for name in level.required]
    known = sa.select(instances.c.id).where(instances.c.id == g.instance_id).exists()
    broken.append(~known)
    return conn.execute(sa.select(sa.literal(1)).where(sa.or_(*broken)).limit(1)).first() is not None


def _describe_violations(conn: sa.Connection, level: Level, first: Window, last: Window) -> str:
    """Name the rule, the table and the first offending rows; the slow path, run on failure only."""
    raw = level.raw
    span = raw.c.collected_date.between(first.previous().start, last.end)
    if level is INSTANCE:
        span = sa.and_(span, sa.func.coalesce(raw.c.is_deleted, sa.false()) == sa.false())
    shown = [raw.c[k] for k in level.keys] + [raw.c.collected_date]
    problems = []
    for name, predicate in _rule_predicates(level):
        where = sa.and_(span, predicate)
        count = conn.execute(sa.select(sa.func.count()).select_from(raw).where(where)).scalar_one()
        if not count:
            continue
        examples = conn.execute(
            sa.select(*shown, *(raw.c[s] for s in level.sizes))
            .where(where)
            .order_by(raw.c.collected_date, *(raw.c[k] for k in level.keys))
            .limit(EXAMPLES)
        ).mappings()
        quoted = "; ".join(_describe_row(level, row) for row in examples)
        problems.append(f"{name} in {count} row(s) of {raw.name}: {quoted}")
    return " | ".join(problems)


def _describe_row(level: Level, row: sa.RowMapping) -> str:
    parts = [f"instance {row['instance_id']}"]
    if "database_name" in level.keys:
        parts.append(f"database {row['database_name']!r}")
    parts.append(f"date {row['collected_date']}")
    sizes = ", ".join(f"{s}={row[s]}" for s in level.sizes)
    return " ".join(parts) + f" ({sizes})"


# --------------------------------------------------------------------------- the write


def _one_writer_per_slice(conn: sa.Connection, level: Level, period: Period) -> None:
    """PostgreSQL: writes of one table and period type take turns, until commit.

    Concurrent upserts alone would not fail (ON CONFLICT waits for the other row
    lock), but two writers could deadlock on keys locked in different orders, and a
    stale-row delete could miss rows the other writer has not committed yet. The
    lock is taken before the raw rows are read, so the second writer computes from
    what the first committed. SQLite's BEGIN IMMEDIATE already serialises writers.
    """
    if conn.dialect.name == "postgresql":
        key = sa.func.hashtext(f"{level.target.name}:{period.value}")
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_CLASS, key)))


def check_tables(conn: sa.Connection, level: Level) -> None:
    missing = missing_tables(conn, (instances, level.raw, level.target))
    if missing:
        url = conn.engine.url.render_as_string(hide_password=True)
        raise MissingTable(
            f"table(s) {', '.join(missing)} missing in {url}: "
            "create them with `sizeagg init-db` (the raw tables are the collector's)"
        )


def write_windows(
    conn: sa.Connection,
    level: Level,
    windows: Sequence[Window],
    now: datetime | None = None,
) -> WriteResult:
    """Make the slice of `windows` (contiguous, one period type) equal the computed set.

    Runs inside the caller's transaction: on any error the caller's rollback leaves
    every slice as it was.
    """
    if not windows:
        raise ValueError("no windows to aggregate")
    period = windows[0].period
    if any(w.period != period for w in windows):
        raise ValueError("windows of one write must share a period type")
    check_tables(conn, level)
    require_partitions(conn, level.target.name, "period_start", [w.start for w in windows])
    _one_writer_per_slice(conn, level, period)
    now = now or datetime.now(UTC)
    first, last = windows[0], windows[-1]
    target = level.target

    create = sa.CreateTableAs(_groups_select(level, windows, conn.dialect.name), GROUPS_TABLE, temporary=True)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {GROUPS_TABLE}"))
    conn.execute(create)
    groups = create.table
    if _violations_in_groups(conn, level, groups):
        raise InvalidRawData(
            f"{level.raw.name} fails validation for {period} {first.start}..{last.end} "
            f"(rows read from {first.previous().start}): " + _describe_violations(conn, level, first, last)
        )

    slice_ = sa.and_(
        target.c.period_type == period.value,
        target.c.period_start.between(first.start, last.start),
    )
    existing = conn.execute(sa.select(sa.func.count()).select_from(target).where(slice_)).scalar_one()

    cur, prev = groups.alias("cur"), groups.alias("prev")
    values = _database_values(cur, prev) if level is DATABASE else _instance_values(cur, prev)
    key_columns = {k: cur.c[k] for k in level.keys}
    selected = {
        **key_columns,
        "period_type": sa.literal(period.value, sa.String),
        "period_start": cur.c.period_start,
        "period_end": cur.c.period_end,
        **values,
        "calculated_at": sa.literal(now, sa.DateTime(timezone=True)),
        "created_at": sa.literal(now, sa.DateTime(timezone=True)),
    }
    join_on = sa.and_(
        prev.c.period_start == cur.c.prev_start,
        *(prev.c[k] == cur.c[k] for k in level.keys),
    )
    source = (
        sa.select(*(expr.label(name) for name, expr in selected.items()))
        .select_from(cur.outerjoin(prev, join_on))
        .where(cur.c.period_start >= first.start)  # SQLite's upsert needs a WHERE
    )
    insert = _insert(conn, target).from_select(list(selected), source)
    unique_key = ["period_type", "period_start", *level.keys]
    updated_columns = [c for c in selected if c not in unique_key and c != "created_at"]
    upsert = insert.on_conflict_do_update(
        index_elements=unique_key,
        set_={c: insert.excluded[c] for c in updated_columns},
    )
    try:
        written = conn.execute(upsert).rowcount
    except sa.exc.DBAPIError as exc:
        explained = _explain_write_error(exc, target, unique_key)
        if explained is None:
            raise
        raise explained from exc
    deleted = conn.execute(
        sa.delete(target).where(slice_, target.c.calculated_at != sa.literal(now, sa.DateTime(timezone=True)))
    ).rowcount
    covered = conn.execute(
        sa.select(sa.func.count(sa.distinct(groups.c.instance_id))).where(
            groups.c.period_start >= first.start
        )
    ).scalar_one()
    conn.execute(sa.text(f"DROP TABLE {GROUPS_TABLE}"))
    updated = existing - deleted
    return WriteResult(
        level=level.name,
        period=period,
        first=first,
        last=last,
        inserted=written - updated,
        updated=updated,
        deleted=deleted,
        instances=covered,
    )


def _explain_write_error(
    exc: sa.exc.DBAPIError, target: sa.Table, unique_key: Sequence[str]
) -> RuntimeError | None:
    """PostgreSQL's errors of an existing (origin) table, said in sizeagg's terms."""
    text = str(exc.orig)
    if "no partition of relation" in text:
        return MissingPartition(
            f"{target.name} has no partition for a row being written ({text.strip().splitlines()[-1]}); "
            "sizeagg adds `<table>_YYYY_MM` month partitions only to tables range-partitioned "
            "by period_start alone and without a DEFAULT partition: create the partition by hand"
        )
    if "no unique or exclusion constraint matching the ON CONFLICT" in text:
        return MissingUniqueKey(
            f"{target.name} has no unique index on ({', '.join(unique_key)}), which sizeagg's "
            "upsert needs: run `sizeagg init-db` to add it"
        )
    return None


def aggregate(
    engine: sa.Engine, level: Level, windows: Sequence[Window], now: datetime | None = None
) -> WriteResult:
    """`write_windows` in a transaction of its own.

    On PostgreSQL, missing month partitions of a partitioned (origin) aggregate table
    are created first, committed in a short transaction of their own (pg_partitions).
    """
    if engine.dialect.name == "postgresql" and windows:
        with engine.begin() as conn:
            ensure_month_partitions(conn, level.target.name, "period_start", [w.start for w in windows])
    with engine.begin() as conn:
        return write_windows(conn, level, windows, now)
