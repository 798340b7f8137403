"""defs/forecast/asset.py: the capacity_forecast asset on daily aggregates with known slopes.

The forecast's arithmetic is tested in core/test_forecast.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, levels, schema
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.defs.forecast.asset import capacity_forecast
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline_tests.support.data import add_instances, fill_days


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    # In memory: the test reads the run result, not storage.
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def test_capacity_forecast_asset(
    engine: sa.Engine, app_url: str, dagster_instance: dg.DagsterInstance
) -> None:
    """Daily aggregates of a data set growing 1 MB/day per database → slopes 1 and 2."""
    first, last = date(2026, 1, 1), date(2026, 2, 9)
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, first, last, databases=2)  # size = 100 + 10·id + db + day
    days = windows_between(Period.DAILY, first.isoformat(), last.isoformat())
    for level in levels.LEVELS:
        aggregation.aggregate(engine, level, days)

    def run() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [capacity_forecast],
            partition_key=last.isoformat(),
            resources={"db": AppDatabase(url=app_url)},
            instance=dagster_instance,
            run_config={"ops": {"capacity_forecast": {"config": {"database_threshold_mb": 160}}}},
        )

    result = run()
    run()  # re-running a partition replaces its slice
    with engine.connect() as conn:
        rows = pd.read_sql(sa.select(schema.capacity_forecasts), conn)
    assert len(rows) == 2 * 2 + 2
    databases = rows[rows["database_name"].notna()]
    assert databases["slope_mb_per_day"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    instances_ = rows[rows["database_name"].isna()]
    assert instances_["slope_mb_per_day"].to_numpy() == pytest.approx(2.0, abs=1e-6)
    assert set(rows["sample_days"]) == {40}
    # instance 1, db0 is 100 + 10 + 0 + 39 = 149 on the last day: 160 in 11 days.
    db0 = databases[(databases["instance_id"] == ids[0]) & (databases["database_name"] == "db0")].iloc[0]
    assert db0["days_until_threshold"] == 11

    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["databases_forecast"] == 4 and meta["instances_forecast"] == 2
    # Last days 149, 150, 159, 160 MB: three reach 160 MB within 30 days, one is there.
    assert meta["flagged_databases"] == 3
    assert meta["already_over_threshold"] == 1
    assert isinstance(meta["flagged"], str)
    assert "i1" in meta["flagged"] and "db0" in meta["flagged"]
    assert meta["dagster/row_count"] == 6
