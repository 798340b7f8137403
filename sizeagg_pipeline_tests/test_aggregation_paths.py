"""The write path's branches: window-by-window ranges, insert vs upsert, counts, SQLite plans."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, schema
from sizeagg_pipeline.core.periods import Period, window_for_key, windows_between

from .conftest import add_db_rows, add_instance_rows, add_instances, fill_days, slice_rows

DB_AGG = schema.database_size_aggregations
INST_AGG = schema.instance_size_aggregations
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 20)


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        ids = add_instances(conn, 3)
        fill_days(conn, ids, FIRST, LAST, databases=3)
    return engine


def _slices(engine: sa.Engine, table: sa.Table, period: str, starts: list[date]) -> list[list[dict]]:
    with engine.connect() as conn:
        return [slice_rows(conn, table, period, s) for s in starts]


def _stamps(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.select(table.c.id, table.c.calculated_at).order_by(table.c.id))
        ]


@pytest.mark.parametrize("bad", ["negative size", "unknown instance"])
def test_bad_row_in_a_later_window_of_a_range_writes_nothing(data: sa.Engine, bad: str) -> None:
    """A range is written window by window in one transaction: a bad last window undoes the first."""
    days = windows_between(Period.DAILY, "2026-03-05", "2026-03-08")
    aggregation.aggregate(data, aggregation.DATABASE, days)
    before = _slices(data, DB_AGG, "daily", [w.start for w in days])
    stamps = _stamps(data, DB_AGG)
    with data.begin() as conn:
        if bad == "negative size":
            conn.execute(
                sa.update(schema.database_size_stats)
                .where(schema.database_size_stats.c.collected_date == date(2026, 3, 8))
                .values(size_mb=-5)
            )
        else:
            row = {"instance_id": 99, "database_name": "x", "size_mb": 1, "collected_date": date(2026, 3, 8)}
            add_db_rows(conn, [row])
    rule = "negative size_mb" if bad == "negative size" else "unknown instance_id"
    with pytest.raises(aggregation.InvalidRawData, match=rule):
        aggregation.aggregate(data, aggregation.DATABASE, days)
    assert _slices(data, DB_AGG, "daily", [w.start for w in days]) == before
    assert _stamps(data, DB_AGG) == stamps


def test_partly_filled_slice_inserts_updates_and_deletes(data: sa.Engine) -> None:
    """A slice that holds some rows takes the upsert path; new groups are inserted, gone ones deleted."""
    month = window_for_key(Period.MONTHLY, "2026-03-01")
    aggregation.aggregate(data, aggregation.DATABASE, [month])
    with data.begin() as conn:
        stats = schema.database_size_stats
        conn.execute(sa.delete(stats).where(stats.c.instance_id == 1, stats.c.database_name == "db0"))
        add_db_rows(conn, [{"instance_id": 2, "database_name": "new", "size_mb": 7, "collected_date": LAST}])
        conn.execute(sa.delete(DB_AGG).where(DB_AGG.c.instance_id == 3, DB_AGG.c.database_name == "db1"))
    result = aggregation.aggregate(data, aggregation.DATABASE, [month])
    # 9 − 1 deleted by hand = 8 rows before; (1, db0) is stale; (3, db1) and (2, new) are new.
    assert (result.inserted, result.updated, result.deleted) == (2, 7, 1)
    written = _slices(data, DB_AGG, "monthly", [month.start])[0]
    with data.begin() as conn:
        conn.execute(sa.delete(DB_AGG))
    fresh = aggregation.aggregate(data, aggregation.DATABASE, [month])
    assert (fresh.inserted, fresh.updated, fresh.deleted) == (9, 0, 0)
    assert _slices(data, DB_AGG, "monthly", [month.start])[0] == written


def test_range_equals_single_windows_and_counts_instances(engine: sa.Engine) -> None:
    """Each window of a range sees exactly its own raw rows and its previous window's."""
    with engine.begin() as conn:
        add_instances(conn, 3)
        add_db_rows(
            conn,
            [
                {"instance_id": 1, "database_name": "a", "size_mb": 10, "collected_date": date(2026, 3, 1)},
                {"instance_id": 1, "database_name": "a", "size_mb": 12, "collected_date": date(2026, 3, 2)},
                {"instance_id": 2, "database_name": "b", "size_mb": 5, "collected_date": date(2026, 3, 4)},
                {"instance_id": 1, "database_name": "a", "size_mb": 9, "collected_date": date(2026, 3, 4)},
            ],
        )
        add_instance_rows(
            conn,
            [
                {
                    "instance_id": 1,
                    "total_size_mb": 10,
                    "database_count": 1,
                    "collected_date": date(2026, 3, 2),
                },
                {
                    "instance_id": 3,
                    "total_size_mb": 4,
                    "database_count": 2,
                    "collected_date": date(2026, 3, 3),
                },
            ],
        )
    days = windows_between(Period.DAILY, "2026-03-02", "2026-03-04")
    starts = [w.start for w in days]
    ranged = {}
    for level, table in ((aggregation.DATABASE, DB_AGG), (aggregation.INSTANCE, INST_AGG)):
        result = aggregation.aggregate(engine, level, days)
        assert result.instances == 2  # database level: 1 and 2; instance level: 1 and 3
        ranged[table.name] = _slices(engine, table, "daily", starts)
    db_rows = ranged[DB_AGG.name]
    assert [len(s) for s in db_rows] == [1, 0, 2]
    assert db_rows[0][0]["size_change_mb"] == 2  # 12 vs 10 on the day before the range
    assert {r["instance_id"]: r["size_change_mb"] for r in db_rows[2]} == {1: 0, 2: 0}  # no 03-03 rows
    with engine.begin() as conn:
        conn.execute(sa.delete(DB_AGG))
        conn.execute(sa.delete(INST_AGG))
    for window in days:
        single = aggregation.aggregate(engine, aggregation.DATABASE, [window])
        assert single.instances == len({r["instance_id"] for r in db_rows[days.index(window)]})
        aggregation.aggregate(engine, aggregation.INSTANCE, [window])
    assert _slices(engine, DB_AGG, "daily", starts) == db_rows
    assert _slices(engine, INST_AGG, "daily", starts) == ranged[INST_AGG.name]


def test_sqlite_reads_a_window_through_the_collected_date_index_after_analyze(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With statistics, SQLite would skip-scan the unique index for `collected_date BETWEEN`."""
    engine = schema.make_engine(f"sqlite:///{tmp_path / 'plans.db'}")
    schema.create_missing(engine)
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, date(2026, 1, 1), date(2026, 3, 31), databases=3)
        conn.exec_driver_sql("ANALYZE")
    day = window_for_key(Period.DAILY, "2026-03-31")
    with engine.begin() as conn:
        naive = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT instance_id, database_name, count(*) FROM database_size_stats "
            "WHERE collected_date BETWEEN '2026-03-31' AND '2026-03-31' GROUP BY instance_id, database_name"
        ).all()
        assert "ANY(instance_id)" in str(naive)  # the trap is real on this data
        for level in aggregation.LEVELS:
            side = aggregation._statements(level.name, Period.DAILY, "sqlite")[0]
            side.table.create(conn)
            compiled = side.group_window.compile(conn)
            params = compiled.construct_params({"lo": day.start, "hi": day.end})
            args = tuple(
                v.isoformat() if isinstance(v, date) else v
                for v in (params[k] for k in compiled.positiontup or ())
            )
            plan = str(conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args).all())
            assert f"USING INDEX ix_{level.raw.name}_collected_date (collected_date=?)" in plan, plan
            side.table.drop(conn)
    result = aggregation.aggregate(engine, aggregation.DATABASE, [day])
    assert result.rows == 6
    engine.dispose()
