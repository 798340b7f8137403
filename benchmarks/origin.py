"""The origin's row-by-row method, small and faithful (its per-instance loop and per-row queries), for timing.

Per period and level the origin re-reads the instance list, then per instance
loads every raw row of the window into Python and groups it there; per group
(database, or the instance itself) it selects the existing aggregate row,
selects the previous window's raw rows, updates or inserts, and commits. It did
this through the ORM (Flask-SQLAlchemy); `OrmStore` does the same with
SQLAlchemy's ORM, `CoreStore` the same round trips with Core statements (a
lower bound: no identity map, no unit of work).

The values are the contract's (exact means, truncation, rounding half away from
zero), computed in Python, so the rows it writes can be compared with sizeagg's
— an independent check of sizeagg's SQL arithmetic. Where the origin code would
re-read expired ORM objects after each commit, this reads each row's values
once (it can only make the origin look faster).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import orm

from sizeagg_pipeline.core.periods import Window
from sizeagg_pipeline.core.schema import (
    PERCENT_LIMIT_HUNDREDTHS,
    database_size_aggregations,
    database_size_stats,
    instance_size_aggregations,
    instance_size_stats,
    instances,
)

ORIGIN_PREFIX = "origin_"
# The origin's unique key order (docs/postgres.md).
ORIGIN_KEYS = {
    "database": ["instance_id", "database_name", "period_type", "period_start"],
    "instance": ["instance_id", "period_type", "period_start"],
}
COMPARED_OUT = {"id", "calculated_at", "created_at"}


# --------------------------------------------------------------------------- contract math


def _trunc_div(num: int, den: int) -> int:
    q = abs(num) // den
    return q if num >= 0 else -q


def _round_half_away(num: int, den: int) -> int:
    q = (2 * abs(num) + den) // (2 * den)
    return q if num >= 0 else -q


def _percent(s1: int, n1: int, s2: int, n2: int) -> int:
    """round2((mean1 − mean2) / mean2 × 100) in hundredths, clamped; 0 when mean2 ≤ 0."""
    if s2 <= 0:
        return 0
    h = _round_half_away((s1 * n2 - s2 * n1) * 10000, n1 * s2)
    return max(-PERCENT_LIMIT_HUNDREDTHS, min(PERCENT_LIMIT_HUNDREDTHS, h))


def _pct(hundredths: int) -> Decimal:
    return Decimal(hundredths).scaleb(-2)


def _change(s1: int, n1: int, s2: int, n2: int) -> int:
    return _trunc_div(s1 * n2 - s2 * n1, n1 * n2)


def _stats(values: Iterable[int | None]) -> tuple[int, int, int | None, int | None]:
    present = [v for v in values if v is not None]
    if not present:
        return 0, 0, None, None
    return sum(present), len(present), min(present), max(present)


def database_values(
    cur: Sequence[tuple[int, int | None, int | None]], prev: Sequence[tuple[Any, ...]]
) -> dict:
    """docs/contract.md, database level, for one database: cur and prev are (size, data, log) per raw row."""
    n = len(cur)
    s, _, mn, mx = _stats(r[0] for r in cur)
    values: dict[str, Any] = {"avg_size_mb": s // n, "max_size_mb": mx, "min_size_mb": mn, "data_count": n}
    sides = {}
    for index, kind in ((1, "data"), (2, "log")):
        ks, kn, kmn, kmx = _stats(r[index] for r in cur)
        values[f"avg_{kind}_size_mb"] = ks // kn if kn else None
        values[f"max_{kind}_size_mb"], values[f"min_{kind}_size_mb"] = kmx, kmn
        sides[kind] = (ks, kn)
    if not prev:
        values.update(size_change_mb=0, size_change_percent=Decimal(0), growth_rate=Decimal(0))
        for kind in ("data", "log"):
            has = sides[kind][1] > 0
            values[f"{kind}_size_change_mb"] = 0 if has else None
            values[f"{kind}_size_change_percent"] = Decimal(0) if has else None
        return values
    ps, pn = sum(r[0] for r in prev), len(prev)
    values["size_change_mb"] = _change(s, n, ps, pn)
    values["size_change_percent"] = values["growth_rate"] = _pct(_percent(s, n, ps, pn))
    for index, kind in ((1, "data"), (2, "log")):
        ks, kn = sides[kind]
        pks, pkn, _, _ = _stats(r[index] for r in prev)
        both = kn > 0 and pkn > 0
        values[f"{kind}_size_change_mb"] = _change(ks, kn, pks, pkn) if both else None
        values[f"{kind}_size_change_percent"] = _pct(_percent(ks, kn, pks, pkn)) if both else None
    return values


def instance_values(cur: Sequence[tuple[int, int]], prev: Sequence[tuple[int, int]]) -> dict:
    """docs/contract.md, instance level: cur and prev are (total_size_mb, database_count) per day."""
    n = len(cur)
    ts, cs = sum(r[0] for r in cur), sum(r[1] for r in cur)
    values: dict[str, Any] = {
        "total_size_mb": ts // n,
        "avg_size_mb": 0 if cs == 0 else ts // cs,
        "max_size_mb": max(r[0] for r in cur),
        "min_size_mb": min(r[0] for r in cur),
        "data_count": n,
        "database_count": cs // n,
        "avg_database_count": _pct(_round_half_away(cs * 100, n)),
        "max_database_count": max(r[1] for r in cur),
        "min_database_count": min(r[1] for r in cur),
    }
    if not prev:
        zero = Decimal(0)
        values.update(
            total_size_change_mb=0,
            total_size_change_percent=zero,
            database_count_change=0,
            database_count_change_percent=zero,
            growth_rate=zero,
            trend_direction="stable",
        )
        return values
    pn, pts, pcs = len(prev), sum(r[0] for r in prev), sum(r[1] for r in prev)
    growth = _percent(ts, n, pts, pn)
    values.update(
        total_size_change_mb=_change(ts, n, pts, pn),
        total_size_change_percent=_pct(growth),
        database_count_change=_change(cs, n, pcs, pn),
        database_count_change_percent=_pct(_percent(cs, n, pcs, pn)),
        growth_rate=_pct(growth),
        trend_direction="growing" if growth > 500 else "shrinking" if growth < -500 else "stable",
    )
    return values


# --------------------------------------------------------------------------- the round trips


class Store(Protocol):
    """What the origin's loop does against the database, one call per round trip."""

    def instance_ids(self, ids: Sequence[int]) -> list[int]: ...
    def window_rows(self, level: str, instance_id: int, lo: date, hi: date) -> list[tuple[Any, ...]]: ...
    def prev_rows(self, level: str, key: tuple[Any, ...], lo: date, hi: date) -> list[tuple[Any, ...]]: ...
    def existing(self, level: str, key: tuple[Any, ...], period: str, start: date) -> Any: ...
    def write(self, level: str, found: Any, row: dict[str, Any]) -> None: ...
    def commit(self) -> None: ...


class OrmStore:
    """The origin's access path: ORM queries, objects, session.add, commit per row."""

    def __init__(self, session: orm.Session, targets: dict[str, sa.Table]) -> None:
        self.session = session
        registry = orm.registry()
        self.cls: dict[str, Any] = {}
        for name, table in {
            "instances": instances,
            "database": database_size_stats,
            "instance": instance_size_stats,
            "database_agg": targets["database"],
            "instance_agg": targets["instance"],
        }.items():
            cls = type(f"Origin_{name}", (), {"__init__": _init_from_kwargs})
            registry.map_imperatively(cls, table)
            self.cls[name] = cls

    def instance_ids(self, ids: Sequence[int]) -> list[int]:
        inst = self.cls["instances"]
        return [i.id for i in self.session.query(inst).filter(inst.id.in_(ids)).order_by(inst.id)]

    def window_rows(self, level: str, instance_id: int, lo: date, hi: date) -> list[tuple[Any, ...]]:
        raw = self.cls[level]
        q = self.session.query(raw).filter(raw.instance_id == instance_id, raw.collected_date.between(lo, hi))
        if level == "database":
            return [(r.database_name, r.size_mb, r.data_size_mb, r.log_size_mb) for r in q]
        q = q.filter(raw.is_deleted.is_(False))
        return [(r.collected_date, r.total_size_mb, r.database_count) for r in q]

    def prev_rows(self, level: str, key: tuple[Any, ...], lo: date, hi: date) -> list[tuple[Any, ...]]:
        raw = self.cls[level]
        q = self.session.query(raw).filter(raw.instance_id == key[0], raw.collected_date.between(lo, hi))
        if level == "database":
            q = q.filter(raw.database_name == key[1])
            return [(r.size_mb, r.data_size_mb, r.log_size_mb) for r in q]
        q = q.filter(raw.is_deleted.is_(False))
        return [(r.collected_date, r.total_size_mb, r.database_count) for r in q]

    def existing(self, level: str, key: tuple[Any, ...], period: str, start: date) -> Any:
        agg = self.cls[f"{level}_agg"]
        filters = {"instance_id": key[0], "period_type": period, "period_start": start}
        if level == "database":
            filters["database_name"] = key[1]
        return self.session.query(agg).filter_by(**filters).first()

    def write(self, level: str, found: Any, row: dict[str, Any]) -> None:
        if found is None:
            self.session.add(self.cls[f"{level}_agg"](**row))
            return
        for name, value in row.items():
            if name not in ("period_end", "created_at"):  # the origin never updated period_end
                setattr(found, name, value)

    def commit(self) -> None:
        self.session.commit()


def _init_from_kwargs(self: Any, **kwargs: Any) -> None:
    for name, value in kwargs.items():
        setattr(self, name, value)


class CoreStore:
    """The same round trips as Core statements: a lower bound for the origin's method."""

    def __init__(self, conn: sa.Connection, targets: dict[str, sa.Table]) -> None:
        self.conn = conn
        self.targets = targets
        conn.begin()

    def instance_ids(self, ids: Sequence[int]) -> list[int]:
        q = sa.select(instances.c.id).where(instances.c.id.in_(ids)).order_by(instances.c.id)
        return list(self.conn.execute(q).scalars())

    def window_rows(self, level: str, instance_id: int, lo: date, hi: date) -> list[tuple[Any, ...]]:
        raw = database_size_stats if level == "database" else instance_size_stats
        where = [raw.c.instance_id == instance_id, raw.c.collected_date.between(lo, hi)]
        if level == "database":
            cols = [raw.c.database_name, raw.c.size_mb, raw.c.data_size_mb, raw.c.log_size_mb]
        else:
            cols = [raw.c.collected_date, raw.c.total_size_mb, raw.c.database_count]
            where.append(raw.c.is_deleted.is_(False))
        return [tuple(r) for r in self.conn.execute(sa.select(*cols).where(*where))]

    def prev_rows(self, level: str, key: tuple[Any, ...], lo: date, hi: date) -> list[tuple[Any, ...]]:
        raw = database_size_stats if level == "database" else instance_size_stats
        where = [raw.c.instance_id == key[0], raw.c.collected_date.between(lo, hi)]
        if level == "database":
            cols = [raw.c.size_mb, raw.c.data_size_mb, raw.c.log_size_mb]
            where.append(raw.c.database_name == key[1])
        else:
            cols = [raw.c.collected_date, raw.c.total_size_mb, raw.c.database_count]
            where.append(raw.c.is_deleted.is_(False))
        return [tuple(r) for r in self.conn.execute(sa.select(*cols).where(*where))]

    def existing(self, level: str, key: tuple[Any, ...], period: str, start: date) -> Any:
        t = self.targets[level]
        where = [t.c.instance_id == key[0], t.c.period_type == period, t.c.period_start == start]
        if level == "database":
            where.append(t.c.database_name == key[1])
        return self.conn.execute(sa.select(t.c.id).where(*where)).scalar()

    def write(self, level: str, found: Any, row: dict[str, Any]) -> None:
        t = self.targets[level]
        if found is None:
            self.conn.execute(t.insert().values(**row))
        else:
            values = {k: v for k, v in row.items() if k not in ("period_end", "created_at")}
            self.conn.execute(t.update().where(t.c.id == found).values(**values))

    def commit(self) -> None:
        self.conn.commit()
        self.conn.begin()


# --------------------------------------------------------------------------- the method


@dataclass(frozen=True)
class OriginRun:
    seconds: float
    rows: int
    round_trips: int


def run_method(store: Store, level: str, window: Window, instance_ids: Sequence[int]) -> OriginRun:
    """One period of one level, the origin's way, for `instance_ids`."""
    prev = window.previous()
    period = window.period.value
    started = time.perf_counter()
    trips = 1
    rows = 0
    for instance_id in store.instance_ids(instance_ids):
        raw = store.window_rows(level, instance_id, window.start, window.end)
        trips += 1
        groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for r in raw:
            if level == "database":
                groups[(instance_id, r[0])].append(r[1:])
            else:
                groups[(instance_id,)].append(r)
        for key, cur in groups.items():
            found = store.existing(level, key, period, window.start)
            prev_raw = store.prev_rows(level, key, prev.start, prev.end)
            if level == "database":
                values = database_values(cur, prev_raw)
            else:
                values = instance_values(_per_day(cur), _per_day(prev_raw))
            now = datetime.now(UTC)
            row = {
                "instance_id": key[0],
                **({"database_name": key[1]} if level == "database" else {}),
                "period_type": period,
                "period_start": window.start,
                "period_end": window.end,
                **values,
                "calculated_at": now,
                "created_at": now,
            }
            store.write(level, found, row)
            store.commit()
            trips += 4
            rows += 1
    return OriginRun(time.perf_counter() - started, rows, trips)


def _per_day(rows: Sequence[tuple[Any, ...]]) -> list[tuple[int, int]]:
    """Instance rows grouped by collected_date (Σ total, Σ count), as the origin did."""
    days: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for day, total, count in rows:
        days[day][0] += total
        days[day][1] += count
    return [(t, c) for t, c in days.values()]


def origin_tables(conn: sa.Connection, copy_table: Any) -> dict[str, sa.Table]:
    """Empty copies of the aggregate tables with the origin's unique key order."""
    return {
        "database": copy_table(
            conn,
            database_size_aggregations,
            ORIGIN_PREFIX + database_size_aggregations.name,
            ORIGIN_KEYS["database"],
        ),
        "instance": copy_table(
            conn,
            instance_size_aggregations,
            ORIGIN_PREFIX + instance_size_aggregations.name,
            ORIGIN_KEYS["instance"],
        ),
    }


def rows_of(conn: sa.Connection, table: sa.Table, period: str, start: date, ids: Sequence[int]) -> list[dict]:
    """A slice's rows for some instances, comparable across tables (no ids, no timestamps)."""
    keys = [table.c.instance_id, *([table.c.database_name] if "database_name" in table.c else [])]
    q = (
        sa.select(*(c for c in table.columns if c.name not in COMPARED_OUT))
        .where(table.c.period_type == period, table.c.period_start == start, table.c.instance_id.in_(ids))
        .order_by(*keys)
    )
    return [dict(r) for r in conn.execute(q).mappings()]
