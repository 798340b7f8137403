"""core/pg_partitions.py: month partitions of the origin's aggregate tables on PostgreSQL.

A missing month partition is created by sizeagg with the origin's name and bounds;
where it cannot be, the error names the partition and the statement; two writers
that need the same month create it once (docs/postgres.md).
"""

from __future__ import annotations

import threading
from datetime import date

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation
from sizeagg_pipeline.core.levels import DATABASE, INSTANCE
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.pg_partitions import MissingPartition, ensure_month_partitions
from sizeagg_pipeline_tests.support.origin_schema import fill_origin as _fill
from sizeagg_pipeline_tests.support.origin_schema import partitions_of as _partitions

pytestmark = pytest.mark.postgres


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
