"""Month partitions of the origin's range-partitioned tables (PostgreSQL only).

The origin platform partitions `database_size_stats` / `instance_size_stats` by
`collected_date` and the two aggregate tables by `period_start`, one partition per
month named `<table>_YYYY_MM` with bounds `[1st, 1st of next month)`
(docs/postgres.md). Nothing there creates partitions ahead of time, and a row
whose month has no partition fails with PostgreSQL's bare "no partition of relation
… found for row". So before sizeagg writes, it creates the missing month partitions
of the rows it is about to write, in a short transaction of its own:

* `CREATE TABLE … PARTITION OF` locks the parent table exclusively until commit; in
  the aggregation's transaction that lock would block every reader for the whole
  aggregation, so creation commits first;
* two writers that need the same month serialise on a transaction-level advisory
  lock and re-check under it, so neither fails with "relation already exists".

Tables that are not partitioned (everything sizeagg creates itself) are left alone;
so are partitioned tables whose scheme is not a single-column RANGE on the expected
date column, or that have a DEFAULT partition (it takes every row).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

# First half of the advisory-lock key: "sizeagg partitions"; the second is the table.
LOCK_CLASS = 0x5A6A_0001


class MissingPartition(RuntimeError):
    """A month partition that a write needs does not exist (and was not created)."""


@dataclass(frozen=True)
class Partition:
    name: str
    lower: date | None  # None: MINVALUE
    upper: date | None  # None: MAXVALUE; exclusive
    is_default: bool = False

    def contains(self, day: date) -> bool:
        if self.is_default:
            return False
        return (self.lower is None or self.lower <= day) and (self.upper is None or day < self.upper)


@dataclass(frozen=True)
class Partitioning:
    """How an existing table is partitioned, as PostgreSQL's catalog says."""

    table: str
    key: str  # pg_get_partkeydef, e.g. "RANGE (collected_date)"
    partitions: tuple[Partition, ...]

    @property
    def range_column(self) -> str | None:
        match = re.fullmatch(r"RANGE \((\w+)\)", self.key)
        return match.group(1) if match else None

    @property
    def has_default(self) -> bool:
        return any(p.is_default for p in self.partitions)

    def managed_on(self, column: str) -> bool:
        """True when sizeagg may add `<table>_YYYY_MM` month partitions on `column`."""
        return self.range_column == column and not self.has_default

    def uncovered(self, days: Iterable[date]) -> list[date]:
        return sorted({d for d in days if not any(p.contains(d) for p in self.partitions)})

    def describe(self) -> str:
        ranged = sorted((p for p in self.partitions if p.lower), key=lambda p: p.lower or date.min)
        span = f", {_month_text(ranged[0].lower)}..{_month_text(ranged[-1].lower)}" if ranged else ""
        default = ", with a DEFAULT partition" if self.has_default else ""
        count = len(self.partitions)
        return f"partitioned by {self.key}: {count} partition{'s' * (count != 1)}{span}{default}"


def _month_text(day: date | None) -> str:
    return day.strftime("%Y-%m") if day else "?"


_BOUND = re.compile(r"FOR VALUES FROM \((.+?)\) TO \((.+?)\)")


def _bound(text: str) -> date | None:
    text = text.strip()
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    return date.fromisoformat(text.strip("'"))


def partitioning(conn: sa.Connection, table: str) -> Partitioning | None:
    """The partitioning of `table` in the current schema, or None if it is a plain table."""
    key = conn.execute(
        sa.text(
            "SELECT pg_get_partkeydef(c.oid) FROM pg_class c "
            "WHERE c.oid = to_regclass(:name) AND c.relkind = 'p'"
        ),
        {"name": table},
    ).scalar_one_or_none()
    if key is None:
        return None
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:name) "
            "ORDER BY c.relname"
        ),
        {"name": table},
    ).all()
    partitions = []
    for name, bound in rows:
        if bound == "DEFAULT":
            partitions.append(Partition(name, None, None, is_default=True))
            continue
        match = _BOUND.fullmatch(bound)
        if match is None:  # a multi-column or non-date range: not ours to reason about
            return Partitioning(table, key, ())
        try:
            partitions.append(Partition(name, _bound(match.group(1)), _bound(match.group(2))))
        except ValueError:
            return Partitioning(table, key, ())
    return Partitioning(table, key, tuple(partitions))


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    """The origin's naming: `<table>_YYYY_MM`."""
    return f"{table}_{month:%Y_%m}"


def create_statement(table: str, month: date) -> str:
    return (
        f'CREATE TABLE IF NOT EXISTS "{partition_name(table, month)}" PARTITION OF "{table}" '
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"
    )


def _months(days: Iterable[date]) -> list[date]:
    return sorted({month_start(d) for d in days})


def ensure_month_partitions(conn: sa.Connection, table: str, column: str, days: Iterable[date]) -> list[str]:
    """Create the month partitions of `table` that rows dated `days` need; return their names.

    Run it in a transaction of its own and commit before writing (see the module
    docstring). Does nothing on other backends and on tables sizeagg does not manage.
    """
    days = list(days)
    if conn.dialect.name != "postgresql" or not days:
        return []
    layout = partitioning(conn, table)
    if layout is None or not layout.managed_on(column) or not layout.uncovered(days):
        return []
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_CLASS, sa.func.hashtext(table))))
    layout = partitioning(conn, table)  # another writer may have created them meanwhile
    assert layout is not None
    created = []
    for month in _months(layout.uncovered(days)):
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(create_statement(table, month))
        except sa.exc.DBAPIError as exc:
            raise MissingPartition(
                f"{table} has no partition for {month:%Y-%m} and sizeagg could not create it "
                f"({_first_line(exc)}); create it with: {create_statement(table, month)}"
            ) from exc
        created.append(partition_name(table, month))
    return created


def require_partitions(conn: sa.Connection, table: str, column: str, days: Iterable[date]) -> None:
    """Fail with the exact partitions to create when rows dated `days` would find none."""
    days = list(days)
    if conn.dialect.name != "postgresql" or not days:
        return
    layout = partitioning(conn, table)
    if layout is None or not layout.managed_on(column):
        return
    missing = _months(layout.uncovered(days))
    if missing:
        statements = "; ".join(create_statement(table, m) for m in missing)
        names = ", ".join(partition_name(table, m) for m in missing)
        raise MissingPartition(
            f"{table} has no month partition {names} for the {column} values being written "
            f"(sizeagg.core.aggregation.aggregate creates it; here, create it with: {statements})"
        )


def _first_line(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
