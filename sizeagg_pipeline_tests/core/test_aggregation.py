"""core/aggregation.py: the write path, through the core, on both backends and on PostgreSQL.

Window-by-window ranges, insert vs upsert, counts, idempotent and atomic partition
writes (docs/contract.md, "Writing a partition"), SQLite's query plans; on PostgreSQL,
the origin's partitioned tables and two writers of one partition at once. The
arithmetic is in test_aggregation_math.py, errors in the raw data in
test_aggregation_bad_input.py, the Dagster assets around it in
defs/aggregates/test_assets.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, levels, schema
from sizeagg_pipeline.core.levels import DATABASE, INSTANCE
from sizeagg_pipeline.core.periods import Period, window_for_key, windows_between
from sizeagg_pipeline_tests.support.data import MARCH_FIRST as FIRST
from sizeagg_pipeline_tests.support.data import MARCH_LAST as LAST
from sizeagg_pipeline_tests.support.data import (
    add_db_rows,
    add_instance_rows,
    add_instances,
    fill_days,
    slice_rows,
    three_instances_in_march,
)
from sizeagg_pipeline_tests.support.origin_schema import JAN
from sizeagg_pipeline_tests.support.origin_schema import disposing_engine as _engine
from sizeagg_pipeline_tests.support.origin_schema import fill_origin as _fill
from sizeagg_pipeline_tests.support.paths import BIN, ROOT
from sizeagg_pipeline_tests.support.postgres import PostgresServer
from sizeagg_pipeline_tests.support.postgres import finish as _finish
from sizeagg_pipeline_tests.support.postgres import wait_for_blocked as _wait_for_blocked

DB_AGG = schema.database_size_aggregations
INST_AGG = schema.instance_size_aggregations


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Three instances, three databases each, every day of 2026-03-01..2026-03-20."""
    return three_instances_in_march(engine)


def _slices(engine: sa.Engine, table: sa.Table, period: str, starts: list[date]) -> list[list[dict]]:
    with engine.connect() as conn:
        return [slice_rows(conn, table, period, s) for s in starts]


def _stamps(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.select(table.c.id, table.c.calculated_at).order_by(table.c.id))
        ]


# --------------------------------------------------------------------------- ranges, inserts and upserts


@pytest.mark.parametrize("bad", ["negative size", "unknown instance"])
def test_bad_row_in_a_later_window_of_a_range_writes_nothing(data: sa.Engine, bad: str) -> None:
    """A range is written window by window in one transaction: a bad last window undoes the first."""
    days = windows_between(Period.DAILY, "2026-03-05", "2026-03-08")
    aggregation.aggregate(data, levels.DATABASE, days)
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
        aggregation.aggregate(data, levels.DATABASE, days)
    assert _slices(data, DB_AGG, "daily", [w.start for w in days]) == before
    assert _stamps(data, DB_AGG) == stamps


def test_partly_filled_slice_inserts_updates_and_deletes(data: sa.Engine) -> None:
    """A slice that holds some rows takes the upsert path; new groups are inserted, gone ones deleted."""
    month = window_for_key(Period.MONTHLY, "2026-03-01")
    aggregation.aggregate(data, levels.DATABASE, [month])
    with data.begin() as conn:
        stats = schema.database_size_stats
        conn.execute(sa.delete(stats).where(stats.c.instance_id == 1, stats.c.database_name == "db0"))
        add_db_rows(conn, [{"instance_id": 2, "database_name": "new", "size_mb": 7, "collected_date": LAST}])
        conn.execute(sa.delete(DB_AGG).where(DB_AGG.c.instance_id == 3, DB_AGG.c.database_name == "db1"))
    result = aggregation.aggregate(data, levels.DATABASE, [month])
    # 9 − 1 deleted by hand = 8 rows before; (1, db0) is stale; (3, db1) and (2, new) are new.
    assert (result.inserted, result.updated, result.deleted) == (2, 7, 1)
    written = _slices(data, DB_AGG, "monthly", [month.start])[0]
    with data.begin() as conn:
        conn.execute(sa.delete(DB_AGG))
    fresh = aggregation.aggregate(data, levels.DATABASE, [month])
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
    for level, table in ((levels.DATABASE, DB_AGG), (levels.INSTANCE, INST_AGG)):
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
        single = aggregation.aggregate(engine, levels.DATABASE, [window])
        assert single.instances == len({r["instance_id"] for r in db_rows[days.index(window)]})
        aggregation.aggregate(engine, levels.INSTANCE, [window])
    assert _slices(engine, DB_AGG, "daily", starts) == db_rows
    assert _slices(engine, INST_AGG, "daily", starts) == ranged[INST_AGG.name]


def test_sqlite_reads_a_window_through_the_collected_date_index_after_analyze(tmp_path: Path) -> None:
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
        for level in levels.LEVELS:
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
    result = aggregation.aggregate(engine, levels.DATABASE, [day])
    assert result.rows == 6
    engine.dispose()


# --------------------------------------------------------------------------- atomic, idempotent writes


def test_row_whose_raw_data_was_deleted_disappears(data: sa.Engine) -> None:
    window = window_for_key(Period.MONTHLY, "2026-03-01")
    aggregation.aggregate(data, levels.DATABASE, [window])
    with data.begin() as conn:
        conn.execute(
            sa.delete(schema.database_size_stats).where(
                schema.database_size_stats.c.database_name == "db2",
                schema.database_size_stats.c.instance_id == 1,
            )
        )
    result = aggregation.aggregate(data, levels.DATABASE, [window])
    assert (result.inserted, result.updated, result.deleted) == (0, 8, 1)
    with data.connect() as conn:
        names = {
            (r["instance_id"], r["database_name"]) for r in slice_rows(conn, DB_AGG, "monthly", window.start)
        }
    assert (1, "db2") not in names and len(names) == 8


def _install_failing_trigger(conn: sa.Connection) -> None:
    """A real failure in the middle of the upsert: the row of database 'boom' aborts it."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
            "IF NEW.database_name = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON database_size_aggregations "
            "FOR EACH ROW EXECUTE FUNCTION boom()"
        )
    else:
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON database_size_aggregations "
            "WHEN NEW.database_name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )


def test_failure_mid_write_leaves_previous_slice_intact(data: sa.Engine) -> None:
    days = windows_between(Period.DAILY, "2026-03-05", "2026-03-06")
    aggregation.aggregate(data, levels.DATABASE, days)
    with data.connect() as conn:
        before = [slice_rows(conn, DB_AGG, "daily", w.start) for w in days]
    with data.begin() as conn:
        # new raw values everywhere, a vanished database, and the row that fails
        conn.execute(
            sa.update(schema.database_size_stats).values(size_mb=schema.database_size_stats.c.size_mb * 2)
        )
        conn.execute(
            sa.delete(schema.database_size_stats).where(schema.database_size_stats.c.database_name == "db1")
        )
        conn.execute(
            schema.database_size_stats.insert(),
            [{"instance_id": 3, "database_name": "boom", "size_mb": 1, "collected_date": date(2026, 3, 6)}],
        )
        _install_failing_trigger(conn)
    with pytest.raises(sa.exc.DBAPIError, match="boom"):
        aggregation.aggregate(data, levels.DATABASE, days)
    with data.connect() as conn:
        after = [slice_rows(conn, DB_AGG, "daily", w.start) for w in days]
        leftovers = sa.inspect(conn).get_temp_table_names() if conn.dialect.name == "sqlite" else []
    assert after == before
    assert "sizeagg_groups" not in leftovers


def test_other_level_and_partitions_unaffected_by_a_failed_partition(data: sa.Engine) -> None:
    good = window_for_key(Period.DAILY, "2026-03-03")
    aggregation.aggregate(data, levels.DATABASE, [good])
    bad = window_for_key(Period.DAILY, "2026-03-12")
    with data.begin() as conn:
        conn.execute(
            sa.update(schema.database_size_stats)
            .where(schema.database_size_stats.c.collected_date == bad.start)
            .values(size_mb=-1)
        )
    with pytest.raises(aggregation.InvalidRawData):
        aggregation.aggregate(data, levels.DATABASE, [bad])
    instance_result = aggregation.aggregate(data, levels.INSTANCE, [bad])
    assert instance_result.inserted == 3
    with data.connect() as conn:
        assert len(slice_rows(conn, DB_AGG, "daily", good.start)) == 9
        assert slice_rows(conn, DB_AGG, "daily", bad.start) == []


def test_open_period_is_aggregated_to_date(data: sa.Engine) -> None:
    # March 2026 has raw rows up to the 20th: the month is aggregated over what exists.
    result = aggregation.aggregate(data, levels.INSTANCE, [window_for_key(Period.MONTHLY, "2026-03-01")])
    assert result.rows == 3
    with data.connect() as conn:
        row = slice_rows(conn, INST_AGG, "monthly", date(2026, 3, 1))[0]
    assert (row["data_count"], row["period_end"]) == ((LAST - FIRST).days + 1, date(2026, 3, 31))
    assert row["total_size_change_mb"] == 0 and row["trend_direction"] == "stable"  # February is empty
    assert FIRST + timedelta(days=19) == LAST


# --------------------------------------------------------------------------- PostgreSQL: origin tables

# A daily range, weeks from the one starting Mon 2025-12-29 (its rows live in the
# December partition, which the origin schema lacks), months, a quarter.
WRITES = {
    Period.DAILY: ("2026-01-01", "2026-02-28"),
    Period.WEEKLY: ("2025-12-29", "2026-02-23"),
    Period.MONTHLY: ("2026-01-01", "2026-02-01"),
    Period.QUARTERLY: ("2026-01-01", "2026-01-01"),
}


def _aggregate_all(engine: sa.Engine) -> None:
    for period, (first, last) in WRITES.items():
        windows = windows_between(period, first, last)
        for level in (DATABASE, INSTANCE):
            aggregation.aggregate(engine, level, windows)


@pytest.mark.postgres
def test_aggregates_on_partitioned_origin_tables_equal_those_on_sizeagg_tables(
    origin: sa.Engine, postgres_server: PostgresServer
) -> None:
    ids = _fill(origin)
    _aggregate_all(origin)

    plain_name = postgres_server.create_database("plain")
    try:
        for plain in _engine(postgres_server.url(plain_name)):
            schema.create_missing(plain)
            assert _fill(plain) == ids
            _aggregate_all(plain)
            with origin.connect() as o, plain.connect() as p:
                compared = 0
                for period, (first, last) in WRITES.items():
                    for window in windows_between(period, first, last):
                        for table in (schema.database_size_aggregations, schema.instance_size_aggregations):
                            rows = slice_rows(o, table, period.value, window.start)
                            assert rows == slice_rows(p, table, period.value, window.start)
                            compared += len(rows)
                assert compared == (59 + 9 + 2 + 1) * 3 * 3  # windows × (2 databases + 1 instance) × 3
    finally:
        postgres_server.drop_database(plain_name)

    with origin.connect() as conn:
        # hand-checked: instance 1, db0, January: sizes 110 + day index (Dec 1 = 0), 141..171;
        # December 110..140, mean 125: change 31, 31/125 = 24.80 %
        jan = conn.execute(
            sa.select(schema.database_size_aggregations).where(
                schema.database_size_aggregations.c.period_type == "monthly",
                schema.database_size_aggregations.c.period_start == JAN,
                schema.database_size_aggregations.c.instance_id == ids[0],
                schema.database_size_aggregations.c.database_name == "db0",
            )
        ).one()
        assert (jan.avg_size_mb, jan.min_size_mb, jan.max_size_mb, jan.data_count) == (156, 141, 171, 31)
        assert (jan.size_change_mb, jan.size_change_percent) == (31, Decimal("24.80"))
        # every row sits in the month partition of its period_start
        placement = conn.execute(
            sa.text(
                "SELECT tableoid::regclass::text, min(period_start), max(period_start), count(*) "
                "FROM database_size_aggregations GROUP BY 1 ORDER BY 1"
            )
        ).all()
    assert [(p[0], p[1], p[2]) for p in placement] == [
        ("database_size_aggregations_2025_12", date(2025, 12, 29), date(2025, 12, 29)),
        ("database_size_aggregations_2026_01", date(2026, 1, 1), date(2026, 1, 31)),
        ("database_size_aggregations_2026_02", date(2026, 2, 1), date(2026, 2, 28)),
    ]


# --------------------------------------------------------------------------- PostgreSQL: two writers at once

# Overlap is made certain rather than hoped for: the test holds a lock the writers
# need, waits until PostgreSQL shows both of them blocked on it, then lets go.
MONTH = "2026-01-01"
INSTANCES, DATABASES = 4, 5


@pytest.mark.postgres
def test_two_runs_materializing_one_partition_at_once(pg_engine: sa.Engine, tmp_path: Path) -> None:
    with pg_engine.begin() as conn:
        ids = add_instances(conn, INSTANCES)
        fill_days(conn, ids, date(2025, 12, 1), date(2026, 1, 31), databases=DATABASES)

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")  # pools: app_db writers bounded
    # Create the instance's storage once, as any deployment has: two processes creating a
    # fresh SQLite storage at the same moment can both stamp its alembic version.
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "sizeagg_pipeline",
        "--select",
        "database_size_monthly,instance_size_monthly",
        "--partition",
        MONTH,
    ]
    blocker = pg_engine.connect()
    try:
        transaction = blocker.begin()
        # Writers may read while this is held, but not write: both runs get as far as
        # their upserts (or the per-slice lock behind them) and wait there.
        blocker.exec_driver_sql(
            "LOCK TABLE database_size_aggregations, instance_size_aggregations IN EXCLUSIVE MODE"
        )
        procs = [
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        try:
            _wait_for_blocked(pg_engine, 2, procs)
            transaction.rollback()
            _finish(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        blocker.close()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2

    month = windows_between(Period.MONTHLY, MONTH, MONTH)
    with pg_engine.connect() as conn:
        for table, per_instance in (
            (schema.database_size_aggregations, DATABASES),
            (schema.instance_size_aggregations, 1),
        ):
            keys = [c for c in ("instance_id", "database_name") if c in table.c]
            duplicates = conn.execute(
                sa.select(*[table.c[k] for k in keys], sa.func.count())
                .where(table.c.period_type == "monthly")
                .group_by(*[table.c[k] for k in keys])
                .having(sa.func.count() > 1)
            ).all()
            assert duplicates == []
            total = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.period_type == "monthly")
            ).scalar_one()
            assert total == INSTANCES * per_instance
        after_race = {
            t.name: slice_rows(conn, t, "monthly", month[0].start)
            for t in (schema.database_size_aggregations, schema.instance_size_aggregations)
        }
    # exact values: identical to one more, uncontended write of the same partition
    for level in levels.LEVELS:
        result = aggregation.aggregate(pg_engine, level, month)
        assert (result.inserted, result.deleted) == (0, 0)
    with pg_engine.connect() as conn:
        for table in (schema.database_size_aggregations, schema.instance_size_aggregations):
            assert slice_rows(conn, table, "monthly", month[0].start) == after_race[table.name]
    # and by hand: instance 1, db0, January: 110 + day index 31..61 → mean 156, vs December's 125
    db0 = next(r for r in after_race["database_size_aggregations"] if r["database_name"] == "db0")
    assert (db0["avg_size_mb"], db0["size_change_mb"], db0["size_change_percent"]) == (
        156,
        31,
        Decimal("24.80"),
    )
