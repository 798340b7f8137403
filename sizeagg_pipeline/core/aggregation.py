"""The aggregation of `docs/contract.md`, as set-based SQL that the database runs.

One call writes one contiguous run of windows of one period type (a partition or
a partition range) for one level, atomically:

1. window by window, starting with the window before the first, one GROUP BY
   of the window's raw rows writes exact sums, counts, minima and maxima into a
   temp table (every raw row is read once; two temp tables alternate);
2. validation reads those groups, not the raw rows again: a negative minimum, a
   maximum beyond exact arithmetic (levels.MAX_EXACT_SIZE), a NULL, or an instance
   id that ``instances`` does not know fails the write (the same query, one row per
   instance id, gives the instances the write covers);
3. each window's groups are joined to the previous window's groups and written
   (a plain insert into an empty slice, else ``INSERT … ON CONFLICT``), every
   value computed from exact integer sums;
4. rows of the slice that this write did not touch are deleted.

Windows whose raw data, or whose previous window's, is no longer complete (before
the raw table's horizon, `core/horizon.py`) are not written at all: their slices stay
exactly as they are, and the result says which were kept.

Why this shape, measured against one hand-written INSERT … SELECT per window
(`benchmarks/`): a GROUP BY per window sorts only that window's rows on the
group keys; a keyed temp table makes the join to the previous window a lookup;
the statements are built once per level and period, so SQLAlchemy compiles
them once.

The formulas themselves, and everything else that differs between the database
and the instance level, are on `core.levels.Level`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .horizon import Kept, kept_rows, read_horizon, remember_first_raw_day, split_kept
from .levels import MAX_EXACT_SIZE, Level, level_named
from .periods import PERIODS, Period, Window
from .pg_partitions import MissingPartition, ensure_month_partitions, require_partitions
from .schema import instances, missing_tables, raw_horizons

GROUPS_TABLE = "sizeagg_groups"
# PostgreSQL planner methods a write turns off for its own statements (see write_windows).
PLANNER_OFF = ("enable_nestloop", "enable_mergejoin")
WRITE_LOCK_CLASS = 0x5A6A_0002  # advisory-lock namespace: one writer per table and period type
EXAMPLES = 5  # offending rows quoted in a validation error


class InvalidRawData(ValueError):
    """Raw rows break a validation rule (docs/contract.md, Validation); nothing was written."""

    def __init__(self, message: str, violations: Violations) -> None:
        super().__init__(message)
        self.violations = violations


class MissingTable(RuntimeError):
    """A table the aggregation reads or writes does not exist."""


class MissingUniqueKey(RuntimeError):
    """An existing aggregate table lacks the unique key the upsert's ON CONFLICT needs."""


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
    kept: Kept | None = None  # the leading windows left as they were (the raw horizon)

    @property
    def rows(self) -> int:
        return self.inserted + self.updated

    @property
    def read_from(self) -> date | None:
        """The first raw day this write read (the window before its first written one); None: none."""
        if self.kept is None:
            return self.first.previous().start
        return None if self.kept.last == self.last else self.kept.last.start

    @property
    def window_text(self) -> str:
        return f"{self.first.start}..{self.last.end}"


# --------------------------------------------------------------------------- SQL pieces


def _groups_table(level: Level, dialect: str, name: str) -> sa.Table:
    """A temp table holding one window's groups.

    A write alternates two of them (this window, the previous one): emptying the
    older one is a truncate, not a delete — on PostgreSQL deleted rows stay in a
    temp table (autovacuum never visits it) and every later scan of a range would
    read them again. On SQLite it is keyed by the group keys, WITHOUT ROWID: the
    join to the previous window is then a key lookup and the GROUP BY's output
    goes in in key order. PostgreSQL hash-joins the two windows, so there a key
    would only cost index maintenance.
    """
    raw = level.raw
    columns: list[sa.Column] = [sa.Column(k, raw.c[k].type, nullable=False) for k in level.keys]
    columns.append(sa.Column("n", sa.BigInteger, nullable=False))
    for size in level.sizes:
        columns += [
            sa.Column(f"{size}_sum", sa.BigInteger),
            sa.Column(f"{size}_n", sa.BigInteger),
            sa.Column(f"{size}_min", sa.BigInteger),
            sa.Column(f"{size}_max", sa.BigInteger),
        ]
    return sa.Table(
        name,
        sa.MetaData(),
        *columns,
        *([sa.PrimaryKeyConstraint(*level.keys)] if dialect == "sqlite" else []),
        prefixes=["TEMPORARY"],
        sqlite_with_rowid=dialect != "sqlite",
    )


def _bigint_sum(column: sa.ColumnElement) -> sa.ColumnElement:
    # PostgreSQL's sum(bigint) is numeric; integer division needs a bigint back.
    return sa.cast(sa.func.sum(column), sa.BigInteger)


def _window_days(lo: sa.BindParameter, hi: sa.BindParameter) -> sa.CTE:
    """SQLite: the days lo..hi as rows (a recursive CTE of ISO dates)."""
    days = sa.select(lo.label("d")).cte("days", recursive=True)
    step = sa.select(sa.func.date(days.c.d, "+1 day")).where(days.c.d < hi)
    return days.union_all(step)


def _group_window(level: Level, groups: sa.Table, dialect: str) -> sa.Insert:
    """One window's raw rows grouped into exact sums, counts, minima and maxima.

    One statement per window (binds :lo, :hi) rather than one GROUP BY over a join
    with every window: each sort is one window's rows on the group keys
    only, as small as a hand-written GROUP BY of that window, and memory stays flat
    however many windows a range has.

    On SQLite the window is a join of its days to the raw rows on
    `collected_date = day`: once the database has statistics (ANALYZE, `PRAGMA
    optimize`), SQLite plans `collected_date BETWEEN` as a skip-scan of the
    (instance_id, database_name, collected_date) unique index, 4× slower for a
    day and never faster (docs/performance.md); an equality per day keeps it on
    the collected_date index with or without statistics.
    """
    raw = level.raw
    columns: list[sa.ColumnElement] = [*(raw.c[k] for k in level.keys), sa.func.count().label("n")]
    for name in level.sizes:
        col = raw.c[name]
        columns += [
            _bigint_sum(col).label(f"{name}_sum"),
            sa.func.count(col).label(f"{name}_n"),
            sa.func.min(col).label(f"{name}_min"),
            sa.func.max(col).label(f"{name}_max"),
        ]
    lo, hi = sa.bindparam("lo", type_=sa.Date), sa.bindparam("hi", type_=sa.Date)
    select = sa.select(*columns)
    if dialect == "sqlite":
        days = _window_days(lo, hi)
        select = select.select_from(days.join(raw, raw.c.collected_date == days.c.d))
    else:
        select = select.where(raw.c.collected_date.between(lo, hi))
    select = select.where(*level.not_deleted).group_by(*(raw.c[k] for k in level.keys))
    return sa.insert(groups).from_select([c.name for c in groups.columns], select)


def _insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


# --------------------------------------------------------------------------- validation


def _window_check(level: Level, groups: sa.Table) -> sa.Select:
    """One row per instance id of one window's groups: does it break a rule?

    One read of the groups gives both what validation needs and the instances the
    write covers: values are checked on the groups' minima, maxima and counts, and each
    distinct id is looked up in ``instances`` once, not once per group.
    """
    g = groups.c
    broken = sa.or_(
        *(g[f"{name}_min"] < 0 for name in level.sizes),
        *(g[f"{name}_max"] > MAX_EXACT_SIZE for name in level.sizes),
        *(g[f"{name}_n"] < g.n for name in level.required),
    )
    per_id = (
        sa.select(g.instance_id, sa.func.max(sa.case((broken, 1), else_=0)).label("broken"))
        .group_by(g.instance_id)
        .subquery("ids")
    )
    unknown = instances.c.id.is_(None)
    return sa.select(
        per_id.c.instance_id, sa.case((unknown, 1), else_=per_id.c.broken).label("bad")
    ).select_from(per_id.outerjoin(instances, instances.c.id == per_id.c.instance_id))


def raw_span(level: Level, first: date | None, last: date | None) -> sa.ColumnElement[bool]:
    """The raw rows an aggregate reads: collected_date in [first, last] (open when None), not deleted."""
    raw = level.raw
    return sa.and_(raw.c.collected_date.between(first or date.min, last or date.max), *level.not_deleted)


def raw_rules(level: Level) -> list[tuple[str, sa.ColumnElement[bool]]]:
    """The validation rules as (rule, predicate on a raw row outer-joined to `instances`)."""
    raw = level.raw
    rules: list[tuple[str, sa.ColumnElement[bool]]] = [
        (f"negative {name}", raw.c[name] < 0) for name in level.sizes
    ]
    rules += [(f"{name} above {MAX_EXACT_SIZE}", raw.c[name] > MAX_EXACT_SIZE) for name in level.sizes]
    rules += [(f"NULL {name}", raw.c[name].is_(None)) for name in level.required]
    rules.append(("unknown instance_id", instances.c.id.is_(None)))
    return rules


@dataclass(frozen=True)
class Violations:
    """Raw rows that break a validation rule: per rule, how many and the first few."""

    table: str
    rows: int  # raw rows looked at
    counts: dict[str, int]  # rule → offending rows (every rule, 0 included)
    examples: dict[str, list[str]]  # rule → the first offending rows, described

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def describe(self) -> str:
        parts = []
        for rule, count in self.counts.items():
            if count:
                shown = self.examples[rule]
                more = f"; … and {count - len(shown)} more" if count > len(shown) else ""
                parts.append(f"{rule} in {count} row(s) of {self.table}: {'; '.join(shown)}{more}")
        return " | ".join(parts)


def find_violations(conn: sa.Connection, level: Level, first: date | None, last: date | None) -> Violations:
    """One scan counts each rule's offenders among the raw rows read; examples only for broken rules."""
    raw = level.raw
    source = raw.outerjoin(instances, instances.c.id == raw.c.instance_id)
    span = raw_span(level, first, last)
    rules = raw_rules(level)
    flags = [
        sa.func.coalesce(sa.func.sum(sa.case((predicate, 1), else_=0)), 0).label(f"rule_{i}")
        for i, (_, predicate) in enumerate(rules)
    ]
    row = conn.execute(sa.select(sa.func.count(), *flags).select_from(source).where(span)).one()
    counts = {rule: int(count) for (rule, _), count in zip(rules, row[1:], strict=True)}
    shown = [raw.c[k] for k in level.keys] + [raw.c.collected_date, *(raw.c[s] for s in level.sizes)]
    examples = {}
    for rule, predicate in rules:
        if counts[rule]:
            offending = conn.execute(
                sa.select(*shown)
                .select_from(source)
                .where(span, predicate)
                .order_by(raw.c.collected_date, *(raw.c[k] for k in level.keys))
                .limit(EXAMPLES)
            ).mappings()
            examples[rule] = [_describe_row(level, r) for r in offending]
    return Violations(table=raw.name, rows=int(row[0]), counts=counts, examples=examples)


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
    lock), but two writers could deadlock on keys locked in different orders, a
    stale-row delete could miss rows the other writer has not committed yet, and
    the plain insert into an empty slice relies on nobody filling it meanwhile.
    The lock is taken before the slice is counted and the raw rows are read, so
    the second writer computes from what the first committed. SQLite's BEGIN
    IMMEDIATE already serialises writers.
    """
    if conn.dialect.name == "postgresql":
        key = sa.func.hashtext(f"{level.target.name}:{period.value}")
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK_CLASS, key)))


def wait_for_writers(engine: sa.Engine, level: Level) -> None:
    """PostgreSQL: wait until every write of `level` that may have read an older horizon has committed.

    Each period's writer lock is taken and released in turn, in a transaction of its
    own: a write holds its lock from before it reads the horizon until it commits, so
    once all four were free, every write still running read the horizon recorded
    before this call (core/retention.py). SQLite's BEGIN IMMEDIATE already serialises
    the record with every write.
    """
    if engine.dialect.name != "postgresql":
        return
    for period in PERIODS:
        with engine.begin() as conn:
            _one_writer_per_slice(conn, level, period)


def _has_upsert_key(conn: sa.Connection, level: Level) -> bool:
    """Does the aggregate table have the unique key the upsert's ON CONFLICT names?

    sizeagg's own tables always do; an early origin table may not (init-db adds it).
    Asked before the plain insert into an empty slice, which would not need it, so
    that such a table fails on its first write as on every later one.
    """
    wanted = {"period_type", "period_start", *level.keys}
    inspector = sa.inspect(conn)
    keys = [set(u["column_names"]) for u in inspector.get_unique_constraints(level.target.name)]
    keys += [
        {c for c in i["column_names"] if c is not None}
        for i in inspector.get_indexes(level.target.name)
        if i["unique"] and not any(k.endswith("_where") for k in i.get("dialect_options", {}))
    ]
    return wanted in keys


def check_tables(conn: sa.Connection, level: Level) -> bool:
    """Fail, naming them, when tables a write needs are missing; True when `raw_horizons` exists.

    `raw_horizons` (init-db creates it) only makes the horizon sharper: a database
    upgraded without init-db still writes, with the horizon the aggregates tell.
    """
    missing = missing_tables(conn, (instances, level.raw, level.target, raw_horizons))
    required = [name for name in missing if name != raw_horizons.name]
    if required:
        url = conn.engine.url.render_as_string(hide_password=True)
        raise MissingTable(
            f"table(s) {', '.join(required)} missing in {url}: "
            "create them with `sizeagg init-db` (the raw tables are the collector's)"
        )
    return raw_horizons.name not in missing


def _write_window(
    dialect: str, level: Level, current: sa.Table, previous: sa.Table, period: Period
) -> tuple[sa.Insert, sa.Insert]:
    """Insert and upsert of one window's rows (binds :start, :end, :now).

    The window's groups are joined to the previous window's groups. The plain
    insert is for a slice that held no rows: PostgreSQL's ON CONFLICT costs a
    second probe of the unique index per row (about 3× the insert itself).
    """
    target = level.target
    cur, prev = current.alias("cur"), previous.alias("prev")
    values = level.values(cur, prev)
    now = sa.bindparam("now", type_=sa.DateTime(timezone=True))
    selected = {
        **{k: cur.c[k] for k in level.keys},
        "period_type": sa.literal(period.value, sa.String),
        "period_start": sa.bindparam("start", type_=sa.Date),
        "period_end": sa.bindparam("end", type_=sa.Date),
        **values,
        "calculated_at": now,
        "created_at": now,
    }
    join_on = sa.and_(*(prev.c[k] == cur.c[k] for k in level.keys))
    source = (
        sa.select(*(expr.label(name) for name, expr in selected.items()))
        .select_from(cur.outerjoin(prev, join_on))
        .where(sa.true())  # SQLite's upsert needs a WHERE to parse ON CONFLICT
    )
    insert = _insert(dialect, target).from_select(list(selected), source)
    unique_key = ["period_type", "period_start", *level.keys]
    updated_columns = [c for c in selected if c not in unique_key and c != "created_at"]
    upsert = insert.on_conflict_do_update(
        index_elements=unique_key,
        set_={c: insert.excluded[c] for c in updated_columns},
    )
    return insert, upsert


@dataclass(frozen=True)
class _Side:
    """The statements that write into, or read from, one of the two temp tables."""

    table: sa.Table
    clear: sa.Executable
    group_window: sa.Insert
    check: sa.Select  # per instance id of the window: broken or unknown?
    insert: sa.Insert  # this table's window joined to the other table's
    upsert: sa.Insert


@functools.cache
def _statements(level_name: str, period: Period, dialect: str) -> tuple[_Side, _Side]:
    """The statements of a write, built once per level, period and dialect.

    Built once so that SQLAlchemy compiles them once (its compiled cache keys on
    the statement's structure): compiling the upsert's arithmetic costs more than
    a daily instance-level write itself.
    """
    level = level_named(level_name)
    tables = [_groups_table(level, dialect, f"{GROUPS_TABLE}_{i}") for i in (0, 1)]
    sides = []
    for i, table in enumerate(tables):
        insert, upsert = _write_window(dialect, level, table, tables[1 - i], period)
        clear = sa.text(f"TRUNCATE {table.name}") if dialect == "postgresql" else sa.delete(table)
        sides.append(
            _Side(
                table=table,
                clear=clear,
                group_window=_group_window(level, table, dialect),
                check=_window_check(level, table),
                insert=insert,
                upsert=upsert,
            )
        )
    return sides[0], sides[1]


def write_windows(
    conn: sa.Connection,
    level: Level,
    windows: Sequence[Window],
    now: datetime | None = None,
) -> WriteResult:
    """Make the slice of `windows` (contiguous, one period type) equal the computed set.

    Window by window, starting with the one before the first: group its raw rows
    into one of two temp tables (emptied first; the other holds the previous
    window), validate those groups, write the window joined to the previous
    window's groups. Every raw row is read once and the temp tables never hold
    more than two windows, so memory stays flat however long a range is. Runs inside the
    caller's transaction: on any error the caller's rollback leaves every slice
    as it was.

    The leading windows whose previous window starts before the raw table's horizon
    are not read or written: their slices are kept as they are (`core/horizon.py`).
    The horizon is read after the writers' lock, so a retention that records a new
    horizon and then waits for that lock never deletes raw rows under a write.
    """
    if not windows:
        raise ValueError("no windows to aggregate")
    period = windows[0].period
    if any(w.period != period for w in windows):
        raise ValueError("windows of one write must share a period type")
    recorded = check_tables(conn, level)
    _one_writer_per_slice(conn, level, period)
    horizon = read_horizon(conn, level, recorded)
    remember_first_raw_day(conn, horizon)
    kept_windows, written_windows = split_kept(horizon, windows)
    kept = kept_rows(conn, level, horizon, kept_windows)
    if not written_windows:
        return WriteResult(level.name, period, windows[0], windows[-1], 0, 0, 0, 0, kept)
    require_partitions(conn, level.target.name, "period_start", [w.start for w in written_windows])
    written, deleted, existing, covered = _write(conn, level, written_windows, now or datetime.now(UTC))
    updated = existing - deleted
    return WriteResult(
        level=level.name,
        period=period,
        first=windows[0],
        last=windows[-1],
        inserted=written - updated,
        updated=updated,
        deleted=deleted,
        instances=covered,
        kept=kept,
    )


def _write(
    conn: sa.Connection, level: Level, windows: Sequence[Window], now: datetime
) -> tuple[int, int, int, int]:
    """Write `windows` (rows written, stale rows deleted, rows the slice held, instances covered)."""
    period = windows[0].period
    first, last = windows[0], windows[-1]
    target = level.target

    slice_ = sa.and_(
        target.c.period_type == period.value,
        target.c.period_start.between(first.start, last.start),
    )
    existing = conn.execute(sa.select(sa.func.count()).select_from(target).where(slice_)).scalar_one()
    upsert = existing > 0 or not _has_upsert_key(conn, level)

    sides = _statements(level.name, period, conn.dialect.name)
    if conn.dialect.name == "postgresql":
        # A window's groups are joined to the previous window's by hashing the
        # latter. The temp tables have no statistics: from their page count and the
        # declared varchar(255) the planner guesses a fifth of the rows at five times
        # their width, and picks a nested loop (quadratic in the groups of a window)
        # or a merge join that sorts both tables again, though the groups fit a hash
        # table. Reset before returning.
        for setting in PLANNER_OFF:
            conn.execute(sa.text(f"SET LOCAL {setting} = off"))
    for side in sides:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {side.table.name}"))
        side.table.create(conn)

    written = 0
    covered: set[int] = set()  # instances with rows in the written windows
    for index, window in enumerate([first.previous(), *windows]):
        side = sides[index % 2]  # the other side holds the previous window
        if index >= 2:
            conn.execute(side.clear)
        conn.execute(side.group_window, {"lo": window.start, "hi": window.end})
        ids = conn.execute(side.check).all()
        if any(bad for _, bad in ids):
            violations = find_violations(conn, level, first.previous().start, last.end)
            raise InvalidRawData(
                f"{level.raw.name} fails validation for {period} {first.start}..{last.end} "
                f"(rows read from {first.previous().start}): {violations.describe()}",
                violations,
            )
        if index == 0:
            continue
        params = {"start": window.start, "end": window.end, "now": now}
        try:
            written += conn.execute(side.upsert if upsert else side.insert, params).rowcount
        except sa.exc.DBAPIError as exc:
            explained = _explain_write_error(exc, target, ["period_type", "period_start", *level.keys])
            if explained is None:
                raise
            raise explained from exc
        covered.update(instance_id for instance_id, _ in ids)

    deleted = 0
    if existing:  # rows of the slice that this write did not touch; none if it was empty
        stale = sa.and_(slice_, target.c.calculated_at != sa.literal(now, sa.DateTime(timezone=True)))
        deleted = conn.execute(sa.delete(target).where(stale)).rowcount
    for side in sides:
        conn.execute(sa.text(f"DROP TABLE {side.table.name}"))
    if conn.dialect.name == "postgresql":
        for setting in PLANNER_OFF:
            conn.execute(sa.text(f"SET LOCAL {setting} TO DEFAULT"))
    return written, deleted, existing, len(covered)


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
