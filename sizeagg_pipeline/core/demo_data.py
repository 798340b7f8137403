"""Deterministic, realistic demo data for the raw tables.

Databases grow, shrink or stay flat with daily noise; the collector misses a few
days; one instance is inactive; one instance's databases appear and vanish. The
same seed always writes the same rows, and writing them twice changes nothing
(rows are upserted like the collector does), so it is safe to re-run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .pg_partitions import ensure_month_partitions
from .schema import database_size_stats, instance_size_stats, instances, not_deleted

DB_TYPES = ("mysql", "postgresql", "sqlserver", "oracle")
PORTS = {"mysql": 3306, "postgresql": 5432, "sqlserver": 1433, "oracle": 1521}
CHUNK_ROWS = 50_000
INACTIVE_INDEX = 2  # the third instance is switched off
CHURNING_INDEX = 3  # the fourth instance's databases come and go


@dataclass(frozen=True)
class DemoSummary:
    instances: int
    database_rows: int
    instance_rows: int
    first_day: date
    last_day: date

    def __str__(self) -> str:
        return (
            f"{self.instances} instances, {self.database_rows} database_size_stats rows, "
            f"{self.instance_rows} instance_size_stats rows, {self.first_day}..{self.last_day}"
        )


def _insert(conn: sa.Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _upsert_instances(conn: sa.Connection, count: int) -> list[int]:
    rows = []
    for i in range(count):
        db_type = DB_TYPES[i % len(DB_TYPES)]
        rows.append(
            {
                "name": f"demo-{db_type}-{i + 1:04d}",
                "db_type": db_type,
                "host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                "port": PORTS[db_type],
                "is_active": i != INACTIVE_INDEX,
            }
        )
    stmt = _insert(conn, instances)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"is_active": stmt.excluded.is_active})
    conn.execute(stmt, rows)
    names = [r["name"] for r in rows]
    ids = dict(
        conn.execute(sa.select(instances.c.name, instances.c.id).where(instances.c.name.in_(names))).all()
    )
    return [ids[n] for n in names]


def _series(rng: np.random.Generator, databases: int, days: int) -> np.ndarray:
    """Sizes in MB, shape (databases, days): growing, shrinking and flat databases."""
    base = rng.lognormal(mean=7.0, sigma=1.3, size=databases)  # median ≈ 1.1 GB
    kind = rng.choice(3, size=databases, p=[0.5, 0.2, 0.3])  # growing, shrinking, flat
    rate = np.where(
        kind == 0,
        rng.uniform(0.001, 0.012, databases),
        np.where(kind == 1, -rng.uniform(0.0005, 0.004, databases), 0.0),
    )
    t = np.arange(days)
    noise = 1 + rng.normal(0, 0.004, size=(databases, days))
    return np.maximum(np.rint(base[:, None] * np.exp(rate[:, None] * t) * noise), 0).astype(np.int64)


def generate(
    conn: sa.Connection,
    *,
    instance_count: int,
    databases: int,
    days: int,
    end: date,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    if min(instance_count, databases, days) < 1:
        raise ValueError("--instances, --databases and --days must all be at least 1")
    report = progress or (lambda text: print(text, file=sys.stderr))
    rng = np.random.default_rng(seed)
    ids = _upsert_instances(conn, instance_count)
    first = end - timedelta(days=days - 1)
    dates = [first + timedelta(days=d) for d in range(days)]
    for table in (database_size_stats, instance_size_stats):  # origin tables: month partitions
        ensure_month_partitions(conn, table.name, "collected_date", dates)
    total = instance_count * databases * days
    db_stmt = _insert(conn, database_size_stats)
    db_stmt = db_stmt.on_conflict_do_update(
        index_elements=["instance_id", "database_name", "collected_date"],
        set_={c: db_stmt.excluded[c] for c in ("size_mb", "data_size_mb", "log_size_mb")},
    )
    inst_stmt = _insert(conn, instance_size_stats)
    inst_stmt = inst_stmt.on_conflict_do_update(
        index_elements=["instance_id", "collected_date"],
        index_where=not_deleted(conn.dialect.name),
        set_={c: inst_stmt.excluded[c] for c in ("total_size_mb", "database_count")},
    )
    pending: list[dict[str, object]] = []
    database_rows = instance_rows = done = 0
    for index, instance_id in enumerate(ids):
        db_type = DB_TYPES[index % len(DB_TYPES)]
        sizes = _series(rng, databases, days)
        present = rng.random((databases, days)) > 0.005  # the odd missed sample
        outage = rng.random(days) < 0.01  # the collector missed the whole instance
        present &= ~outage[None, :]
        if index == CHURNING_INDEX:
            born = rng.integers(0, days, databases)
            lifetime = rng.integers(max(days // 4, 1), days + 1, databases)
            t = np.arange(days)[None, :]
            present &= (t >= born[:, None]) & (t < (born + lifetime)[:, None])
        data = np.rint(sizes * 0.85).astype(np.int64) if db_type == "mysql" else sizes
        log = np.rint(sizes * 0.1).astype(np.int64) if db_type == "sqlserver" else None
        for d_index, day in enumerate(dates):
            for db in np.flatnonzero(present[:, d_index]):
                pending.append(
                    {
                        "instance_id": instance_id,
                        "database_name": f"db_{db + 1:03d}",
                        "size_mb": int(sizes[db, d_index]),
                        "data_size_mb": int(data[db, d_index]),
                        "log_size_mb": None if log is None else int(log[db, d_index]),
                        "collected_date": day,
                    }
                )
        day_totals = (sizes * present).sum(axis=0)
        day_counts = present.sum(axis=0)
        daily = [
            {
                "instance_id": instance_id,
                "total_size_mb": int(day_totals[d]),
                "database_count": int(day_counts[d]),
                "collected_date": dates[d],
            }
            for d in np.flatnonzero(day_counts)
        ]
        if daily:
            conn.execute(inst_stmt, daily)
        instance_rows += len(daily)
        done += databases * days
        if len(pending) >= CHUNK_ROWS or index == len(ids) - 1:
            if pending:
                conn.execute(db_stmt, pending)
            database_rows += len(pending)
            pending = []
            if total >= 100_000:
                report(f"demo-data: {done:,}/{total:,} samples ({done / total:.0%})")
    return DemoSummary(len(ids), database_rows, instance_rows, first, end)
