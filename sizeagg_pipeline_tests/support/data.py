"""Rows for the application database: instances, raw size rows, aggregate slices, and named data sets.

The named data sets are each shared by the test modules of several package
modules (a test module's `data` fixture returns one of them); a data set only one
test module uses stays in that module's fixture.
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from sizeagg_pipeline.core import schema


def add_instances(conn: sa.Connection, count: int, *, inactive: tuple[int, ...] = ()) -> list[int]:
    """Instances named i1..iN; ids returned in order."""
    rows = [
        {"name": f"i{n}", "db_type": "mysql", "host": "h", "port": 3306, "is_active": n not in inactive}
        for n in range(1, count + 1)
    ]
    conn.execute(schema.instances.insert(), rows)
    return list(conn.execute(sa.select(schema.instances.c.id).order_by(schema.instances.c.id)).scalars())


def add_db_rows(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    full = [{"data_size_mb": None, "log_size_mb": None, **r} for r in rows]
    conn.execute(schema.database_size_stats.insert(), full)


def add_instance_rows(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    conn.execute(schema.instance_size_stats.insert(), rows)


def fill_days(
    conn: sa.Connection,
    instance_ids: list[int],
    first: date,
    last: date,
    databases: int = 2,
    size: int = 100,
) -> None:
    """A complete, consistent data set: every database every day, instance totals to match."""
    day = first
    db_rows, inst_rows = [], []
    while day <= last:
        for instance_id in instance_ids:
            sizes = [size + instance_id * 10 + d + (day - first).days for d in range(databases)]
            for d, value in enumerate(sizes):
                db_rows.append(
                    {
                        "instance_id": instance_id,
                        "database_name": f"db{d}",
                        "size_mb": value,
                        "collected_date": day,
                    }
                )
            inst_rows.append(
                {
                    "instance_id": instance_id,
                    "total_size_mb": sum(sizes),
                    "database_count": databases,
                    "collected_date": day,
                }
            )
        day += timedelta(days=1)
    add_db_rows(conn, db_rows)
    add_instance_rows(conn, inst_rows)


def slice_rows(conn: sa.Connection, table: sa.Table, period: str, start: date) -> list[dict[str, object]]:
    """Rows of one slice, without the timestamps, in key order."""
    drop = {"id", "calculated_at", "created_at"}
    rows = conn.execute(
        sa.select(table)
        .where(table.c.period_type == period, table.c.period_start == start)
        .order_by(*[c for c in table.primary_key.columns], table.c.instance_id)
    ).mappings()
    result = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    return sorted(result, key=lambda r: (r["instance_id"], str(r.get("database_name", ""))))


# --------------------------------------------------------------------------- named data sets

MARCH_FIRST, MARCH_LAST = date(2026, 3, 1), date(2026, 3, 20)


def three_instances_in_march(engine: sa.Engine) -> sa.Engine:
    """Instances i1..i3, three databases each, every day of MARCH_FIRST..MARCH_LAST."""
    with engine.begin() as conn:
        ids = add_instances(conn, 3)
        fill_days(conn, ids, MARCH_FIRST, MARCH_LAST, databases=3)
    return engine


BAD_INPUT_DAY = date(2026, 5, 12)


def two_instances_until_bad_input_day(engine: sa.Engine) -> sa.Engine:
    """Instances i1, i2, two databases each, every day of 2026-05-01..BAD_INPUT_DAY."""
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, date(2026, 5, 1), BAD_INPUT_DAY)
    return engine


def two_instances_observed(engine: sa.Engine) -> sa.Engine:
    """Instances i1, i2, two databases each, every day of 2026-02-16..2026-03-18 (late-data tests)."""
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, date(2026, 2, 16), date(2026, 3, 18), databases=2)
    return engine


RUN_DAY = date(2026, 3, 16)


def every_kind_of_instance(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 with data, 4 active without data, 5 inactive, 6 soft-deleted (until RUN_DAY)."""
    with engine.begin() as conn:
        ids = add_instances(conn, 6, inactive=(5,))
        conn.execute(
            sa.update(schema.instances)
            .where(schema.instances.c.id == ids[5])
            .values(deleted_at=sa.func.now())
        )
        fill_days(conn, ids[:3], date(2026, 2, 20), RUN_DAY, databases=2)
        fill_days(conn, [ids[4]], RUN_DAY, RUN_DAY, databases=1)
    return engine


EXECUTION_DAY = date(2026, 3, 18)  # a Wednesday


def three_active_one_inactive(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 active, 4 inactive; two databases each, every day of 2026-02-20..EXECUTION_DAY."""
    with engine.begin() as conn:
        ids = add_instances(conn, 4, inactive=(4,))
        fill_days(conn, ids, date(2026, 2, 20), EXECUTION_DAY, databases=2)
    return engine
