"""Capacity limits (`capacity_limits`): how big a database or an instance's total may grow.

A DBA sets them with `sizeagg limits set|import|list`; the forecast measures each
series against its limit (`core/forecast.py`). An instance is named as in
`instances.name`; a limit without a database is the instance's total. A CSV import
is checked whole before anything is written: one bad line names the file and the
line, and nothing changes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .schema import capacity_limits, instances

CSV_COLUMNS = ("instance", "database", "limit_mb", "note")


@dataclass(frozen=True)
class Limit:
    instance: str  # instances.name
    database: str | None  # None: the instance's total
    limit_mb: int
    note: str | None = None
    line: int | None = None  # where it came from, when it came from a file

    @property
    def what(self) -> str:
        return f"{self.instance}/{self.database}" if self.database else f"{self.instance} (instance total)"


def parse_limit_mb(text: str) -> int:
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"limit_mb {text.strip()!r} is not a whole number of MB") from None
    if value <= 0:
        raise ValueError(f"limit_mb {value} must be above 0")
    return value


def read_csv(path: Path) -> list[Limit]:
    """The limits of a CSV file with the header `instance,database,limit_mb[,note]`.

    Raises ValueError naming the file and line of the first problem.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS[:3] if c not in header]
        if missing:
            raise ValueError(
                f"{path} line 1: the header needs the columns {', '.join(CSV_COLUMNS)} "
                f"(missing: {', '.join(missing)})"
            )
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if unknown:
            raise ValueError(
                f"{path} line 1: unknown column {unknown[0]!r} (columns: {', '.join(CSV_COLUMNS)})"
            )
        result: list[Limit] = []
        seen: dict[tuple[str, str | None], int] = {}
        for row in reader:
            line = reader.line_num
            values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if None in row:
                raise ValueError(f"{path} line {line}: more fields than the header has")
            if not values.get("instance"):
                raise ValueError(f"{path} line {line}: the instance is empty")
            try:
                limit = Limit(
                    values["instance"],
                    values.get("database") or None,
                    parse_limit_mb(values.get("limit_mb", "")),
                    values.get("note") or None,
                    line,
                )
            except ValueError as exc:
                raise ValueError(f"{path} line {line}: {exc}") from None
            key = (limit.instance, limit.database)
            if key in seen:
                raise ValueError(f"{path} line {line}: {limit.what} is already on line {seen[key]}")
            seen[key] = line
            result.append(limit)
    return result


def _instance_ids(conn: sa.Connection, names: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(names))
    rows = conn.execute(sa.select(instances.c.name, instances.c.id).where(instances.c.name.in_(wanted)))
    return {name: instance_id for name, instance_id in rows}


def save(conn: sa.Connection, limits: Sequence[Limit], now: datetime, source: str = "") -> int:
    """Insert or replace each limit, in the caller's transaction; every instance must exist.

    `source` prefixes the error ("FILE line N") when the limits came from a file.
    """
    ids = _instance_ids(conn, (limit.instance for limit in limits))
    for limit in limits:
        if limit.instance not in ids:
            where = f"{source} line {limit.line}: " if source and limit.line else ""
            raise ValueError(f"{where}no instance named {limit.instance!r} in instances")
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
    table = capacity_limits
    for limit in limits:
        is_database = limit.database is not None
        statement = insert(table).values(
            instance_id=ids[limit.instance],
            database_name=limit.database,
            limit_mb=limit.limit_mb,
            note=limit.note,
            created_at=now,
            updated_at=now,
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["instance_id", "database_name"] if is_database else ["instance_id"],
                index_where=table.c.database_name.isnot(None)
                if is_database
                else table.c.database_name.is_(None),
                set_={"limit_mb": limit.limit_mb, "note": limit.note, "updated_at": now},
            )
        )
    return len(limits)


def read(conn: sa.Connection) -> dict[tuple[int, str | None], int]:
    """Every limit by series: (instance_id, database_name or None for the instance total) → MB."""
    table = capacity_limits
    rows = conn.execute(sa.select(table.c.instance_id, table.c.database_name, table.c.limit_mb))
    return {(instance_id, database): limit_mb for instance_id, database, limit_mb in rows}


def listing(conn: sa.Connection) -> list[Limit]:
    table = capacity_limits
    rows = conn.execute(
        sa.select(instances.c.name, table.c.database_name, table.c.limit_mb, table.c.note)
        .join(instances, instances.c.id == table.c.instance_id)
        .order_by(instances.c.name, table.c.database_name.is_not(None), table.c.database_name)
    )
    return [Limit(name, database, limit_mb, note) for name, database, limit_mb, note in rows]
