"""defs/aggregates/partitions.py: the four time-window partitions definitions.

ISO weeks start on Monday, quarters on the 1st of Jan/Apr/Jul/Oct, and a key that
is not a partition is refused before anything is written.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.data import two_instances_until_bad_input_day


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Two instances, two databases each, every day of 2026-05-01..2026-05-12."""
    return two_instances_until_bad_input_day(engine)


def test_weekly_partitions_start_on_monday() -> None:
    weekly = defs.resolve_assets_def("database_size_weekly").partitions_def
    assert weekly is not None
    keys = weekly.get_partition_keys()
    assert keys[0] == "2024-01-01"  # a Monday
    assert keys[1] == "2024-01-08"
    quarterly = defs.resolve_assets_def("database_size_quarterly").partitions_def
    assert quarterly is not None
    assert quarterly.get_partition_keys()[:4] == ["2024-01-01", "2024-04-01", "2024-07-01", "2024-10-01"]


@pytest.mark.parametrize(
    ("job", "key"), [("daily_aggregation_job", "2026-02-30"), ("weekly_aggregation_job", "2026-05-13")]
)
def test_bad_partition_key_through_dagster(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, job: str, key: str
) -> None:
    with pytest.raises(dg.DagsterUnknownPartitionError, match=key):
        defs.resolve_job_def(job).execute_in_process(partition_key=key, instance=dagster_instance)
    with data.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(schema.database_size_aggregations)
            ).scalar_one()
            == 0
        )
