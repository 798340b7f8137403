"""core/aggregation.py: bad raw data gets a clear error naming what and where, and loses nothing.

The validation rules are docs/contract.md, "Validation", including the bound that keeps
every intermediate of the exact arithmetic in int64 on both engines. A bad date on the command
line is in cli/test_main.py, a bad partition key in defs/aggregates/test_partitions.py.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, levels, quality, schema
from sizeagg_pipeline.core.periods import Period, Window, window_for_key
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.data import BAD_INPUT_DAY as DAY
from sizeagg_pipeline_tests.support.data import (
    add_db_rows,
    add_instance_rows,
    add_instances,
    slice_rows,
    two_instances_until_bad_input_day,
)


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Two instances, two databases each, every day of 2026-05-01..DAY."""
    return two_instances_until_bad_input_day(engine)


def test_negative_size_names_rule_table_instance_database_and_date(data: sa.Engine) -> None:
    good = window_for_key(Period.DAILY, "2026-05-05")
    aggregation.aggregate(data, levels.DATABASE, [good])
    with data.begin() as conn:
        for name in ("db0", "db1"):
            conn.execute(
                sa.update(schema.database_size_stats)
                .where(
                    schema.database_size_stats.c.database_name == name,
                    schema.database_size_stats.c.collected_date == DAY,
                    schema.database_size_stats.c.instance_id == 2,
                )
                .values(size_mb=-5)
            )
    week = window_for_key(Period.WEEKLY, "2026-05-11")
    with pytest.raises(aggregation.InvalidRawData) as info:
        aggregation.aggregate(data, levels.DATABASE, [week])
    message = str(info.value)
    assert "database_size_stats" in message and "weekly 2026-05-11..2026-05-17" in message
    assert "negative size_mb in 2 row(s)" in message
    assert "instance 2 database 'db0' date 2026-05-12 (size_mb=-5" in message
    with data.connect() as conn:
        assert slice_rows(conn, schema.database_size_aggregations, "weekly", week.start) == []
        assert len(slice_rows(conn, schema.database_size_aggregations, "daily", good.start)) == 4


def test_unknown_instance_id(data: sa.Engine) -> None:
    with data.begin() as conn:
        add_db_rows(
            conn, [{"instance_id": 99, "database_name": "ghost", "size_mb": 1, "collected_date": DAY}]
        )
        add_instance_rows(
            conn, [{"instance_id": 98, "total_size_mb": 1, "database_count": 1, "collected_date": DAY}]
        )
    day = window_for_key(Period.DAILY, DAY.isoformat())
    with pytest.raises(
        aggregation.InvalidRawData,
        match=r"unknown instance_id in 1 row\(s\) of database_size_stats: instance 99 database 'ghost'",
    ):
        aggregation.aggregate(data, levels.DATABASE, [day])
    with pytest.raises(
        aggregation.InvalidRawData,
        match=r"unknown instance_id .* instance_size_stats: instance 98 date 2026-05-12",
    ):
        aggregation.aggregate(data, levels.INSTANCE, [day])


def test_negative_value_in_previous_window_fails_too(data: sa.Engine) -> None:
    with data.begin() as conn:
        conn.execute(
            sa.update(schema.instance_size_stats)
            .where(schema.instance_size_stats.c.collected_date == date(2026, 5, 11))
            .values(database_count=-1)
        )
    with pytest.raises(aggregation.InvalidRawData, match="negative database_count in 2 row"):
        aggregation.aggregate(data, levels.INSTANCE, [window_for_key(Period.DAILY, DAY.isoformat())])


def test_null_size_in_an_existing_table_without_not_null(app_url: str) -> None:
    # An origin-like database whose raw table lacks NOT NULL: init-db leaves it as it is.
    engine = schema.make_engine(app_url)
    id_type = "BIGSERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE database_size_stats (id {id_type} PRIMARY KEY, instance_id INTEGER, "
            "database_name VARCHAR(255), size_mb BIGINT, data_size_mb BIGINT, log_size_mb BIGINT, "
            "collected_date DATE, collected_at TIMESTAMP, created_at TIMESTAMP)"
        )
    report = schema.create_missing(engine)
    assert "database_size_stats" in report.found and "database_size_stats" not in report.created
    with engine.begin() as conn:
        add_instances(conn, 1)
        add_db_rows(conn, [{"instance_id": 1, "database_name": "n", "size_mb": None, "collected_date": DAY}])
    with pytest.raises(aggregation.InvalidRawData, match="NULL size_mb in 1 row"):
        aggregation.aggregate(engine, levels.DATABASE, [window_for_key(Period.DAILY, DAY.isoformat())])
    engine.dispose()


def test_missing_raw_table(app_url: str, dagster_instance: dg.DagsterInstance) -> None:
    engine = schema.make_engine(app_url)
    with engine.begin() as conn:
        schema.metadata.create_all(conn, tables=[schema.instances, schema.database_size_aggregations])
    with pytest.raises(aggregation.MissingTable, match=r"database_size_stats missing in .*sizeagg init-db"):
        aggregation.aggregate(engine, levels.DATABASE, [window_for_key(Period.DAILY, DAY.isoformat())])
    result = defs.resolve_job_def("daily_aggregation_job").execute_in_process(
        partition_key=DAY.isoformat(), instance=dagster_instance, raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("database_size_daily")
    assert failure is not None and "database_size_stats missing" in str(failure.error)
    engine.dispose()


# --------------------------------------------------------------------------- numbers beyond exact range

BOUND = levels.MAX_EXACT_SIZE
PREVIOUS = window_for_key(Period.QUARTERLY, "2025-10-01")  # 92 days
QUARTER = window_for_key(Period.QUARTERLY, "2026-01-01")  # 90 days


def _days(window: Window) -> list[date]:
    return [window.start + timedelta(days=i) for i in range(window.days)]


@pytest.fixture
def two_quarters(engine: sa.Engine) -> sa.Engine:
    """Instance 1, database 'big': every day of Q4 2025 tens of thousands of MB, every day of
    Q1 2026 just up to the bound, the instance's daily total the same. The largest intermediate
    (the percent rounding, 2·diff·10000 ≈ 1.7·10^18) is past 2^53: floating point would round."""
    previous = {day: 20_000 + 7 * i for i, day in enumerate(_days(PREVIOUS))}
    current = {day: BOUND - 3 * i for i, day in enumerate(_days(QUARTER))}  # the bound itself on day one
    rows = previous | current
    with engine.begin() as conn:
        add_instances(conn, 1)
        add_db_rows(
            conn,
            [
                {"instance_id": 1, "database_name": "big", "size_mb": v, "collected_date": d}
                for d, v in rows.items()
            ],
        )
        add_instance_rows(
            conn,
            [
                {"instance_id": 1, "total_size_mb": v, "database_count": 1, "collected_date": d}
                for d, v in rows.items()
            ],
        )
    return engine


def _exact(previous: list[int], current: list[int]) -> tuple[int, int, Decimal]:
    """floor(mean), trunc(cur − prev) and the 2-decimal percentage, in Python's exact integers."""
    s1, n1, s2, n2 = sum(current), len(current), sum(previous), len(previous)
    change = Fraction(s1, n1) - Fraction(s2, n2)
    hundredths = change / Fraction(s2, n2) * 10000
    rounded = (
        math.floor(hundredths + Fraction(1, 2))
        if hundredths >= 0
        else -math.floor(-hundredths + Fraction(1, 2))
    )
    return s1 // n1, math.trunc(change), Decimal(rounded) / 100


def _stored(conn: sa.Connection, table: sa.Table, columns: tuple[str, str, str]) -> tuple[int, int, Decimal]:
    row = conn.execute(
        sa.select(*(table.c[c] for c in columns)).where(
            table.c.period_type == "quarterly", table.c.period_start == QUARTER.start
        )
    ).one()
    return int(row[0]), int(row[1]), Decimal(row[2]).quantize(Decimal("0.01"))


def test_sizes_up_to_the_exact_bound_aggregate_exactly(two_quarters: sa.Engine) -> None:
    previous = [20_000 + 7 * i for i in range(PREVIOUS.days)]
    current = [BOUND - 3 * i for i in range(QUARTER.days)]
    expected = _exact(previous, current)
    assert expected[2] > 1_000_000  # a percentage numeric(10,2) holds, not clamped
    aggregation.aggregate(two_quarters, levels.DATABASE, [QUARTER])
    aggregation.aggregate(two_quarters, levels.INSTANCE, [QUARTER])
    with two_quarters.connect() as conn:
        database = _stored(
            conn, schema.database_size_aggregations, ("avg_size_mb", "size_change_mb", "size_change_percent")
        )
        instance = _stored(
            conn,
            schema.instance_size_aggregations,
            ("total_size_mb", "total_size_change_mb", "total_size_change_percent"),
        )
    assert database == instance == expected


@pytest.mark.parametrize("size", [BOUND + 1, 2**53 + 1])
@pytest.mark.parametrize("window", [QUARTER, PREVIOUS], ids=["in the window", "in the previous window"])
def test_a_size_beyond_the_bound_fails_the_partition_on_both_engines(
    two_quarters: sa.Engine, size: int, window: Window
) -> None:
    """SQLite would store a REAL and report a wrong change, PostgreSQL fail with "bigint out of range":
    both refuse the row with the same validation error, and write nothing."""
    with two_quarters.begin() as conn:
        for table in (schema.database_size_stats, schema.instance_size_stats):
            size_column = "size_mb" if table is schema.database_size_stats else "total_size_mb"
            conn.execute(
                sa.update(table).where(table.c.collected_date == window.start).values({size_column: size})
            )
    with pytest.raises(aggregation.InvalidRawData) as database:
        aggregation.aggregate(two_quarters, levels.DATABASE, [QUARTER])
    assert str(database.value) == (
        "database_size_stats fails validation for quarterly 2026-01-01..2026-03-31 (rows read from "
        f"2025-10-01): size_mb above 10000000000 in 1 row(s) of database_size_stats: instance 1 database "
        f"'big' date {window.start} (size_mb={size}, data_size_mb=None, log_size_mb=None)"
    )
    with pytest.raises(aggregation.InvalidRawData) as instance:
        aggregation.aggregate(two_quarters, levels.INSTANCE, [QUARTER])
    assert str(instance.value) == (
        "instance_size_stats fails validation for quarterly 2026-01-01..2026-03-31 (rows read from "
        f"2025-10-01): total_size_mb above 10000000000 in 1 row(s) of instance_size_stats: instance 1 "
        f"date {window.start} (total_size_mb={size}, database_count=1)"
    )
    # the blocking raw_rows_valid check reports the same rule
    with two_quarters.connect() as conn:
        finding = quality.raw_rows_valid(conn, levels.DATABASE, PREVIOUS.start, QUARTER.end)
        assert not finding.passed
        assert finding.counts["size_mb_above_10000000000"] == 1
        for table in (schema.database_size_aggregations, schema.instance_size_aggregations):
            assert slice_rows(conn, table, "quarterly", QUARTER.start) == []
