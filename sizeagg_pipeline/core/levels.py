"""The database level and the instance level: everything that differs between them.

The two levels run the same machinery (`core.aggregation` writes, `core.quality`
checks, `core.late_data` fingerprints, the Dagster assets and checks); a `Level`
says which raw table feeds which aggregate table, the group keys, the columns that
are validated, the not-deleted filter, the formulas of `docs/contract.md`, labels
and lineage. No code outside this module asks which level it holds.

Exact arithmetic without floats: a mean is ``sum / count``, so with integer
division (which both SQLite and PostgreSQL truncate toward zero) ``floor(mean)`` of
non-negative sizes is ``sum / count``; ``trunc(cur − prev)`` is
``(S1·n2 − S2·n1) / (n1·n2)``; and a percentage is rounded half away from zero on
the exact rational, by integer arithmetic in hundredths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from .lineage import DATABASE_LINEAGE, INSTANCE_LINEAGE, Lineage
from .periods import Period
from .schema import (
    PERCENT_LIMIT_HUNDREDTHS,
    database_size_aggregations,
    database_size_stats,
    instance_size_aggregations,
    instance_size_stats,
)

# The largest raw size (or database count) the arithmetic below keeps exact on both
# engines: a raw row above it fails validation (core.aggregation.raw_rules). With at
# most N rows per group and window and values ≤ M, the largest intermediate is the
# rounding of a percentage, 2·(S1·n2 − S2·n1)·10000 + n1·S2 ≤ 20001·N²·M; a quarter of
# daily rows (N = 92) keeps that within int64 for M ≤ 5.4·10^10, and 10^10 MB (10 PB)
# leaves room for 2.3 rows per day. Above int64 PostgreSQL fails with "bigint out of
# range" while SQLite silently switches to floating point (docs/contract.md, Validation).
MAX_EXACT_SIZE = 10_000_000_000

# The columns written from one window's groups (`cur`) joined to the previous window's (`prev`).
Values = Callable[[sa.FromClause, sa.FromClause], dict[str, sa.ColumnElement]]


@dataclass(frozen=True, eq=False)
class Level:
    """Which raw table feeds which aggregate table, and how."""

    name: str  # "database" or "instance": asset names, check names, labels
    raw: sa.Table
    target: sa.Table
    keys: tuple[str, ...]  # group keys besides the period
    sizes: tuple[str, ...]  # validated non-negative columns
    required: tuple[str, ...]  # columns that must not be NULL
    not_deleted: tuple[sa.ColumnElement[bool], ...]  # raw rows counted (none: every row)
    data_count: sa.ColumnElement  # what data_count counts over a group's raw rows
    counted: str  # that, in words
    size_column: str  # the aggregate column charts and growth rank by
    values: Values  # the aggregate columns, contract formulas
    fingerprint: sa.ColumnElement  # one raw row's term of a day's checksum (core.late_data)
    lineage: Lineage
    raw_description: str  # what the raw table holds, for the UI

    def asset_name(self, period: Period) -> str:
        return f"{self.name}_size_{period}"

    @property
    def label(self) -> str:
        """Capitalised name, for descriptions ("Database-level …")."""
        return self.name.capitalize()


# --------------------------------------------------------------------------- arithmetic


def round_half_away(numerator: sa.ColumnElement, denominator: sa.ColumnElement) -> sa.ColumnElement:
    """round(numerator / denominator) half away from zero; denominator > 0."""
    return sa.case(
        (numerator >= 0, (2 * numerator + denominator) // (2 * denominator)),
        else_=-((-2 * numerator + denominator) // (2 * denominator)),
    )


def _percent_hundredths(diff: sa.ColumnElement, base: sa.ColumnElement) -> sa.ColumnElement:
    """round2(diff / base × 100) in hundredths, clamped to the numeric(10,2) range."""
    h = round_half_away(diff * 10000, base)
    return sa.case(
        (h > PERCENT_LIMIT_HUNDREDTHS, PERCENT_LIMIT_HUNDREDTHS),
        (h < -PERCENT_LIMIT_HUNDREDTHS, -PERCENT_LIMIT_HUNDREDTHS),
        else_=h,
    )


def as_percent(hundredths: sa.ColumnElement) -> sa.ColumnElement:
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


def _database_values(cur: sa.FromClause, prev: sa.FromClause) -> dict[str, sa.ColumnElement]:
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
    size_percent = sa.case((no_prev, 0), else_=as_percent(size.hundredths))
    values["size_change_mb"] = sa.case((no_prev, 0), else_=size.mb)
    values["size_change_percent"] = size_percent
    for kind in ("data", "log"):
        col = f"{kind}_size_mb"
        change = _Change(cur.c[f"{col}_sum"], cur.c[f"{col}_n"], prev.c[f"{col}_sum"], prev.c[f"{col}_n"])
        has_cur = cur.c[f"{col}_n"] > 0
        both = sa.and_(has_cur, prev.c[f"{col}_n"] > 0)
        values[f"{kind}_size_change_mb"] = sa.case((no_prev, sa.case((has_cur, 0))), (both, change.mb))
        values[f"{kind}_size_change_percent"] = sa.case(
            (no_prev, sa.case((has_cur, 0))), (both, as_percent(change.hundredths))
        )
    values["growth_rate"] = size_percent
    return values


def _instance_values(cur: sa.FromClause, prev: sa.FromClause) -> dict[str, sa.ColumnElement]:
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
        "avg_database_count": as_percent(round_half_away(cur.c.database_count_sum * 100, cur.c.n)),
        "max_database_count": cur.c.database_count_max,
        "min_database_count": cur.c.database_count_min,
        "total_size_change_mb": sa.case((no_prev, 0), else_=total.mb),
        "total_size_change_percent": as_percent(growth),
        "database_count_change": sa.case((no_prev, 0), else_=count.mb),
        "database_count_change_percent": sa.case((no_prev, 0), else_=as_percent(count.hundredths)),
        "growth_rate": as_percent(growth),
        # Decided on the stored (rounded) growth rate: +5.004 % is 5.00, stable.
        "trend_direction": sa.case((growth > 500, "growing"), (growth < -500, "shrinking"), else_="stable"),
    }


# --------------------------------------------------------------------------- fingerprints

# A raw row's checksum term is weighted by its id (mod a prime), so swapping values
# between two rows changes a day's sum; each term is reduced mod 2^31 - 1 so the sum
# never overflows a bigint.
_ID_MOD = 9973
_TERM_MOD = 2147483647


def _weighted(table: sa.Table, values: sa.ColumnElement) -> sa.ColumnElement:
    return ((table.c.id % _ID_MOD + 1) * values) % _TERM_MOD


_db = database_size_stats.c
_inst = instance_size_stats.c

DATABASE = Level(
    name="database",
    raw=database_size_stats,
    target=database_size_aggregations,
    keys=("instance_id", "database_name"),
    sizes=("size_mb", "data_size_mb", "log_size_mb"),
    required=("size_mb",),
    not_deleted=(),
    data_count=sa.func.count(),
    counted="raw rows",
    size_column="avg_size_mb",
    values=_database_values,
    fingerprint=_weighted(
        database_size_stats,
        _db.size_mb * 3
        + sa.func.coalesce(_db.data_size_mb, -1) * 5
        + sa.func.coalesce(_db.log_size_mb, -1) * 7
        + _db.instance_id * 11
        + sa.func.length(_db.database_name) * 13,
    ),
    lineage=DATABASE_LINEAGE,
    raw_description=(
        "Raw daily size of every database on every monitored instance, written by the "
        "platform's collector (one row per instance, database and collected_date)."
    ),
)
INSTANCE = Level(
    name="instance",
    raw=instance_size_stats,
    target=instance_size_aggregations,
    keys=("instance_id",),
    sizes=("total_size_mb", "database_count"),
    required=("total_size_mb", "database_count"),
    not_deleted=(sa.func.coalesce(_inst.is_deleted, sa.false()) == sa.false(),),
    data_count=sa.func.count(sa.distinct(_inst.collected_date)),
    counted="days with a row",
    size_column="total_size_mb",
    values=_instance_values,
    fingerprint=_weighted(
        instance_size_stats,
        _inst.total_size_mb * 3
        + _inst.database_count * 5
        + sa.case((_inst.is_deleted.is_(sa.true()), 17), else_=0)
        + _inst.instance_id * 11,
    ),
    lineage=INSTANCE_LINEAGE,
    raw_description=(
        "Raw daily total size and database count of every monitored instance, written "
        "by the collector (one non-deleted row per instance and collected_date)."
    ),
)
LEVELS: tuple[Level, ...] = (DATABASE, INSTANCE)


def level_named(name: str) -> Level:
    """The level called `name` ("database" or "instance")."""
    for level in LEVELS:
        if level.name == name:
            return level
    raise LookupError(f"no level {name!r}")
