"""Fast, set-based benchmark data: the database computes every raw row itself.

`sizeagg demo-data` builds rows in Python and upserts them, which is fine for a
demo and hours for 20 M rows. Here one ``INSERT … SELECT`` per day makes all of
that day's rows inside the database from a deterministic integer formula, so the
same arguments give the same rows on SQLite and PostgreSQL (integer division
truncates on both), and older days can be added later to grow the history.

Per database and day ``n`` (days since `epoch`):
``size = base · (1 + g·n / 100 000) + noise``, base 50 MB … 100 GB, growth g in
−0.02 … +0.06 % a day, noise ±11 MB; never negative. About 0.5 % of samples are
missing (some groups have no previous window); every fourth instance has no
data size (NULL), every fourth has log sizes; one in 97 instances has an extra
soft-deleted ``instance_size_stats`` row every 7th day (must be ignored).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from sizeagg_pipeline.core.schema import instances

DB_TYPES = ("mysql", "postgresql", "sqlserver", "oracle")
DAYS_PER_COMMIT = 10

# The per-day statements, per dialect. :day is the date, :n its day number.
_SIZE = "base + base * g * :n / 100000 + ((iid * 131 + bn * 71 + :n * 1009) % 23) - 11"
_PRESENT = "(iid * 13 + bn * 7 + :n) % 211 <> 0"
_DB_COLUMNS = "instance_id, database_name, size_mb, data_size_mb, log_size_mb, collected_date, collected_at"
_DB_VALUES = (
    "CASE iid % 4 WHEN 3 THEN NULL WHEN 0 THEN s * 85 / 100 ELSE s END, CASE WHEN iid % 4 = 2 THEN s / 10 END"
)

SQLITE_DAY = f"""
WITH RECURSIVE b(bn) AS (SELECT 1 UNION ALL SELECT bn + 1 FROM b WHERE bn < :databases),
v AS (
    SELECT iid, bn, {_SIZE} AS s FROM (
        SELECT i.id AS iid, b.bn AS bn,
               50 + ((i.id * 7919 + b.bn * 104729) % 20011) * 5 AS base,
               ((i.id * 31 + b.bn * 17) % 81) - 20 AS g
        FROM instances AS i CROSS JOIN b
    ) WHERE {_PRESENT}
)
INSERT INTO database_size_stats ({_DB_COLUMNS})
SELECT iid, 'db_' || substr('00' || bn, -3, 3), s, {_DB_VALUES}, :day, :day || ' 03:00:00.000000'
FROM v ORDER BY iid, bn
"""

POSTGRES_DAY = f"""
INSERT INTO database_size_stats ({_DB_COLUMNS})
SELECT iid, 'db_' || lpad(bn::text, 3, '0'), s, {_DB_VALUES}, :day, :day + time '03:00'
FROM (
    SELECT iid, bn, {_SIZE} AS s FROM (
        SELECT i.id AS iid, b.bn AS bn,
               50 + ((i.id * 7919 + b.bn * 104729) % 20011) * 5 AS base,
               ((i.id * 31 + b.bn * 17) % 81) - 20 AS g
        FROM instances AS i CROSS JOIN generate_series(1, :databases) AS b(bn)
    ) AS raw WHERE {_PRESENT}
) AS v ORDER BY iid, bn
"""

# instance_size_stats is what the collector derives from the same samples.
INSTANCE_DAY = """
INSERT INTO instance_size_stats (instance_id, total_size_mb, database_count, collected_date, collected_at)
SELECT instance_id, SUM(size_mb), COUNT(*), collected_date, MIN(collected_at)
FROM database_size_stats WHERE collected_date = :day
GROUP BY instance_id, collected_date
"""
DELETED_DAY = """
INSERT INTO instance_size_stats
    (instance_id, total_size_mb, database_count, collected_date, collected_at, is_deleted, deleted_at)
SELECT id, 0, 0, :day, :at, :true, :at FROM instances WHERE id % 97 = 0
"""


def add_instances(conn: sa.Connection, count: int) -> None:
    rows = [
        {
            "name": f"bench-{i:05d}",
            "db_type": DB_TYPES[i % 4],
            "host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            "port": 5432,
        }
        for i in range(1, count + 1)
    ]
    conn.execute(instances.insert(), rows)


def loader_engine(url: str) -> sa.Engine:
    """An engine for bulk loading: on SQLite no journal, no fsync, a 2 GiB page cache.

    The benchmark's data is throw-away; the load is dominated by random inserts
    into the unique index, which a large cache and long transactions keep in memory.
    """
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2097152"):
                dbapi_connection.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    return engine


def add_days(
    engine: sa.Engine,
    first: date,
    last: date,
    *,
    databases: int,
    epoch: date,
    progress: Callable[[str], None] = print,
) -> None:
    """Raw rows of every instance for each day in first..last, `DAYS_PER_COMMIT` days a transaction."""
    pg = engine.dialect.name == "postgresql"
    day_sql = sa.text(POSTGRES_DAY if pg else SQLITE_DAY)
    if pg:
        day_sql = day_sql.bindparams(sa.bindparam("day", type_=sa.Date))
    total = (last - first).days + 1
    for batch in range(0, total, DAYS_PER_COMMIT):
        with engine.begin() as conn:
            for index in range(batch, min(batch + DAYS_PER_COMMIT, total)):
                day = first + timedelta(days=index)
                n = (day - epoch).days
                if n < 0:
                    raise ValueError(f"day {day} is before the data epoch {epoch}")
                value: object = day if pg else day.isoformat()
                conn.execute(day_sql, {"day": value, "n": n, "databases": databases})
                conn.execute(sa.text(INSTANCE_DAY), {"day": value})
                if n % 7 == 0:
                    at = f"{day.isoformat()} 04:00:00" + ("+00" if pg else ".000000")
                    conn.execute(sa.text(DELETED_DAY), {"day": value, "at": at, "true": True})
        done = min(batch + DAYS_PER_COMMIT, total)
        if done % 50 < DAYS_PER_COMMIT or done == total:
            progress(f"  raw data: {done}/{total} days written ({first}..{first + timedelta(days=done - 1)})")


def settle(engine: sa.Engine) -> None:
    """Let a bulk write's after-effects finish before the next measurement.

    SQLite: `sync` — the kernel writes the gigabytes of a fresh load back to disk for
    a minute or more, and a daily window timed meanwhile took up to 1.4× as long as
    after it, unevenly between sizeagg and the floor. No ANALYZE
    (docs/performance.md: sizeagg must plan well without statistics).
    PostgreSQL: VACUUM (ANALYZE) now, what autovacuum would do after a bulk write:
    with ANALYZE alone, autovacuum's pass over tens of millions of new or rewritten
    rows (and the checkpoints it drives) overlapped the timings that followed.
    """
    if engine.dialect.name != "postgresql":
        os.sync()
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")
