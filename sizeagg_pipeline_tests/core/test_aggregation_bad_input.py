"""core/aggregation.py: bad raw data gets a clear error naming what and where, and loses nothing.

The validation rules are docs/contract.md, "Validation". A bad date on the command
line is in cli/test_main.py, a bad partition key in defs/aggregates/test_partitions.py.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, levels, schema
from sizeagg_pipeline.core.periods import Period, window_for_key
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
