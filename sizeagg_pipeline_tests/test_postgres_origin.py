"""sizeagg pointed at a PostgreSQL database that already holds the origin's partitioned tables.

Issue 5, point 2: `init-db` adds only what is missing and reports what it found;
aggregation works on the month-partitioned tables, with the origin's column types and
unique-key column order; a missing month partition of an aggregate table is created
by sizeagg, and where it cannot be, the error names the partition and the statement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from sizeagg_pipeline import cli
from sizeagg_pipeline.core import aggregation, schema
from sizeagg_pipeline.core.aggregation import DATABASE, INSTANCE, MissingUniqueKey
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.pg_partitions import MissingPartition, ensure_month_partitions
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR

from .conftest import add_instances, fill_days, slice_rows
from .origin_schema import build_origin_schema, catalog_snapshot
from .postgres import PostgresServer

pytestmark = pytest.mark.postgres

DEC, JAN, FEB, MAR = date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
RAW_MONTHS = [DEC, JAN, FEB]
# A daily range, weeks from the one starting Mon 2025-12-29 (its rows live in the
# December partition, which the origin schema below lacks), months, a quarter.
WRITES = {
    Period.DAILY: ("2026-01-01", "2026-02-28"),
    Period.WEEKLY: ("2025-12-29", "2026-02-23"),
    Period.MONTHLY: ("2026-01-01", "2026-02-01"),
    Period.QUARTERLY: ("2026-01-01", "2026-01-01"),
}


def _engine(url: str) -> Iterator[sa.Engine]:
    engine = schema.make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def origin(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """Origin capacity tables; raw partitions Dec–Feb, aggregate partitions Jan–Feb only."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    for engine in _engine(postgresql_url):
        build_origin_schema(engine, RAW_MONTHS, aggregate_months=[JAN, FEB])
        yield engine


def _fill(engine: sa.Engine) -> list[int]:
    with engine.begin() as conn:
        ids = add_instances(conn, 3, inactive=(3,))
        fill_days(conn, ids, DEC, date(2026, 2, 28), databases=2)
    return ids


def _aggregate_all(engine: sa.Engine) -> None:
    for period, (first, last) in WRITES.items():
        windows = windows_between(period, first, last)
        for level in (DATABASE, INSTANCE):
            aggregation.aggregate(engine, level, windows)


def _partitions(conn: sa.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    )
    return dict(rows.all())


def test_init_db_reports_what_it_found_and_adds_only_the_missing_tables(
    origin: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with origin.connect() as conn:
        before = catalog_snapshot(conn)

    assert cli.main(["init-db"]) == 0
    out = capsys.readouterr().out

    created = [line for line in out.splitlines() if line.startswith("created ")]
    # the origin has no session tables, and capacity_forecasts is sizeagg's own
    assert created == ["created capacity_forecasts", "created sync_sessions", "created sync_instance_records"]
    for table in ("instances", "database_size_stats", "instance_size_stats"):
        assert f"found   {table}\n" in out
    assert "partitioned by RANGE (collected_date): 3 partitions, 2025-12..2026-02" in out
    assert (
        "partitioned by RANGE (period_start): 2 partitions, 2026-01..2026-02; "
        "sizeagg makes missing month partitions before it writes"
    ) in out
    # the origin's unique keys, in the origin's column order, are the ones sizeagg upserts on
    assert (
        "upsert key uq_database_size_aggregation (instance_id, database_name, period_type, period_start)"
        in out
    )
    assert "upsert key uq_instance_size_aggregation (instance_id, period_type, period_start)" in out
    assert "upsert key uq_instance_size_stats_instance_date (instance_id, collected_date) WHERE" in out
    assert "total_size_mb is INTEGER (sizeagg creates BIGINT)" in out
    assert "PROBLEM" not in out

    with origin.connect() as conn:
        after = catalog_snapshot(conn)
    new_tables = {"sync_sessions", "sync_instance_records", "capacity_forecasts"}
    assert [r for r in after["columns"] if r[0] not in new_tables] == before["columns"]
    assert [r for r in after["kinds"] if r[0] not in new_tables] == before["kinds"]
    assert {r[0] for r in after["indexes"]} - {r[0] for r in before["indexes"]} == {
        "sync_sessions_pkey",
        "sync_sessions_session_id_key",
        "ix_sync_sessions_status",
        "sync_instance_records_pkey",
        "ix_sync_instance_records_session_id",
        "capacity_forecasts_pkey",
        "uq_capacity_forecasts_database",
        "uq_capacity_forecasts_instance",
    }
    assert [r for r in after["indexes"] if r in before["indexes"]] == before["indexes"]

    assert cli.main(["init-db"]) == 0  # a second run finds everything and creates nothing
    assert "\ncreated " not in capsys.readouterr().out


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


def test_missing_month_partitions_are_created_with_origin_names_and_bounds(origin: sa.Engine) -> None:
    _fill(origin)
    aggregation.aggregate(origin, DATABASE, windows_between(Period.WEEKLY, "2025-12-29", "2025-12-29"))
    aggregation.aggregate(origin, INSTANCE, windows_between(Period.DAILY, "2026-03-01", "2026-03-02"))
    with origin.connect() as conn:
        assert _partitions(conn, "database_size_aggregations") == {
            "database_size_aggregations_2025_12": "FOR VALUES FROM ('2025-12-01') TO ('2026-01-01')",
            "database_size_aggregations_2026_01": "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
            "database_size_aggregations_2026_02": "FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')",
        }
        assert "instance_size_aggregations_2026_03" in _partitions(conn, "instance_size_aggregations")
        weekly = conn.execute(
            sa.text(
                "SELECT count(*) FROM database_size_aggregations_2025_12 "
                "WHERE period_type = 'weekly' AND period_start = '2025-12-29'"
            )
        ).scalar_one()
        # the partition also carries the parent's indexes, the unique key among them
        indexes = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'database_size_aggregations_2025_12'")
        ).scalars()
        assert any(
            "UNIQUE" in d and "(instance_id, database_name, period_type, period_start)" in d for d in indexes
        )
    assert weekly == 6  # 3 instances × 2 databases, the inactive one included


def test_a_write_in_a_callers_transaction_names_the_partition_to_create(origin: sa.Engine) -> None:
    _fill(origin)
    march = windows_between(Period.DAILY, "2026-03-01", "2026-03-01")
    with pytest.raises(MissingPartition) as caught, origin.begin() as conn:
        aggregation.write_windows(conn, DATABASE, march)
    message = str(caught.value)
    assert "database_size_aggregations_2026_03" in message
    assert (
        'CREATE TABLE IF NOT EXISTS "database_size_aggregations_2026_03" PARTITION OF '
        "\"database_size_aggregations\" FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')"
    ) in message
    assert "no partition of relation" not in message


def test_a_partition_sizeagg_cannot_create_is_named_with_its_statement(origin: sa.Engine) -> None:
    _fill(origin)
    with origin.begin() as conn:  # someone else's layout: mid-month bounds
        conn.exec_driver_sql(
            "CREATE TABLE database_size_aggregations_odd PARTITION OF database_size_aggregations "
            "FOR VALUES FROM ('2026-03-15') TO ('2026-04-15')"
        )
    with pytest.raises(MissingPartition) as caught:
        aggregation.aggregate(origin, DATABASE, windows_between(Period.DAILY, "2026-03-02", "2026-03-02"))
    message = str(caught.value)
    assert "database_size_aggregations has no partition for 2026-03" in message
    assert "would overlap partition" in message
    assert "FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')" in message


def test_a_layout_sizeagg_does_not_manage_fails_in_sizeaggs_words(origin: sa.Engine) -> None:
    _fill(origin)
    with origin.begin() as conn:  # partitioned by period type instead of by month
        conn.exec_driver_sql("DROP TABLE instance_size_aggregations")
        conn.exec_driver_sql(
            "CREATE TABLE instance_size_aggregations ("
            " id bigserial, instance_id int4 NOT NULL, period_type varchar(20) NOT NULL,"
            " period_start date NOT NULL, period_end date NOT NULL, total_size_mb int8 NOT NULL,"
            " avg_size_mb int8 NOT NULL, max_size_mb int8 NOT NULL, min_size_mb int8 NOT NULL,"
            " data_count int4 NOT NULL, database_count int4 NOT NULL, avg_database_count numeric(10,2),"
            " max_database_count int4, min_database_count int4, total_size_change_mb int8,"
            " total_size_change_percent numeric(10,2), database_count_change int4,"
            " database_count_change_percent numeric(10,2), growth_rate numeric(10,2),"
            " trend_direction varchar(20), calculated_at timestamptz NOT NULL,"
            " created_at timestamptz NOT NULL,"
            " UNIQUE (instance_id, period_type, period_start)) PARTITION BY LIST (period_type)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE instance_size_aggregations_daily PARTITION OF instance_size_aggregations "
            "FOR VALUES IN ('daily')"
        )
    aggregation.aggregate(origin, INSTANCE, windows_between(Period.DAILY, "2026-01-05", "2026-01-05"))
    with pytest.raises(MissingPartition) as caught:
        aggregation.aggregate(origin, INSTANCE, windows_between(Period.WEEKLY, "2026-01-05", "2026-01-05"))
    message = str(caught.value)
    assert message.startswith("instance_size_aggregations has no partition for a row being written")
    assert "(period_type) = (weekly)" in message
    assert "create the partition by hand" in message


def test_init_db_adds_the_missing_upsert_key_of_an_early_origin_table(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The origin's first DDL had no unique key on database_size_aggregations."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    for engine in _engine(postgresql_url):
        build_origin_schema(engine, RAW_MONTHS, database_aggregation_key=False)
        _fill(engine)
        week = windows_between(Period.WEEKLY, "2026-01-05", "2026-01-05")
        with pytest.raises(MissingUniqueKey, match=r"run `sizeagg init-db` to add it"):
            aggregation.aggregate(engine, DATABASE, week)

        assert cli.main(["init-db"]) == 0
        out = capsys.readouterr().out
        assert (
            "added   unique index uq_database_size_aggregation on database_size_aggregations "
            "(instance_id, database_name, period_type, period_start)"
        ) in out

        result = aggregation.aggregate(engine, DATABASE, week)
        again = aggregation.aggregate(engine, DATABASE, week)
        assert (result.inserted, again.inserted, again.updated, again.deleted) == (6, 0, 6, 0)
        with engine.connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM database_size_aggregations WHERE period_type = 'weekly'")
            ).scalar_one()
        assert count == 6


def test_narrow_percent_columns_are_reported_as_a_problem(
    origin: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The origin's first DDL had numeric(5,2): any change of 1000 % or more overflowed."""
    with origin.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE database_size_aggregations ALTER COLUMN size_change_percent TYPE numeric(5,2)"
        )
    assert cli.main(["init-db"]) == 1
    out = capsys.readouterr().out
    assert (
        "PROBLEM database_size_aggregations.size_change_percent is NUMERIC(5, 2): percentages beyond "
        "±999.99 fail with a numeric overflow; widen it with ALTER TABLE database_size_aggregations "
        "ALTER COLUMN size_change_percent TYPE numeric(10,2)"
    ) in out


def test_partition_creation_by_two_writers_at_once(origin: sa.Engine) -> None:
    """Both need April; the advisory lock makes one create it and the other find it."""
    first, second = origin.connect(), origin.connect()
    try:
        with first.begin():
            created_first = ensure_month_partitions(
                first, "instance_size_aggregations", "period_start", [date(2026, 4, 6)]
            )
            # the second starts while the first has not committed: it waits, then finds it
            result: list[list[str]] = []

            def other() -> None:
                with second.begin():
                    result.append(
                        ensure_month_partitions(
                            second, "instance_size_aggregations", "period_start", [date(2026, 4, 20)]
                        )
                    )

            thread = threading.Thread(target=other)
            thread.start()
            thread.join(timeout=1.0)
            assert thread.is_alive()  # blocked on the lock
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    assert created_first == ["instance_size_aggregations_2026_04"]
    assert result == [[]]


def test_the_cli_end_to_end_on_an_origin_database(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """init-db, demo-data and a daily tick on the origin's tables,
    with the origin's CHECK constraints on the session tables and no aggregate partitions."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for engine in _engine(postgresql_url):
        build_origin_schema(engine, [FEB], sync_tables=True, aggregate_months=[])
        assert cli.main(["init-db"]) == 0
        created = [line for line in capsys.readouterr().out.splitlines() if line.startswith("created ")]
        assert created == ["created capacity_forecasts"]  # the origin has every other table
        assert (
            cli.main(
                ["demo-data", "--instances", "4", "--databases", "3", "--days", "45", "--end", "2026-03-10"]
            )
            == 0
        )
        assert cli.main(["run", "--date", "2026-03-10"]) == 0
        out = capsys.readouterr().out
        assert (
            out.count("completed: 3 instances, 3 succeeded, 0 failed") == 1
        )  # one demo instance is inactive
        with engine.connect() as conn:
            raw = _partitions(conn, "database_size_stats")
            aggregates = _partitions(conn, "database_size_aggregations")
            statuses = conn.execute(
                sa.text("SELECT status, count(*) FROM sync_instance_records GROUP BY status")
            ).all()
        assert set(raw) == {f"database_size_stats_2026_0{m}" for m in (1, 2, 3)}
        # daily/weekly/monthly of March, the quarter of January
        assert set(aggregates) == {"database_size_aggregations_2026_01", "database_size_aggregations_2026_03"}
        assert statuses == [("completed", 3)]
