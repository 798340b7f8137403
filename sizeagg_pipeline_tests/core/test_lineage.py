"""core/lineage.py: every column of every aggregate and forecast table has lineage, from real sources.

How the assets carry it is in defs/aggregates/test_lineage.py, how the UI shows it
in e2e/test_lineage_ui.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import lineage, schema
from sizeagg_pipeline.defs.forecast.asset import FORECAST_SOURCES


@pytest.mark.parametrize(
    ("mapping", "table", "sources"),
    [
        (lineage.DATABASE_LINEAGE, schema.database_size_aggregations, schema.database_size_stats.c.keys()),
        (lineage.INSTANCE_LINEAGE, schema.instance_size_aggregations, schema.instance_size_stats.c.keys()),
        (lineage.FORECAST_LINEAGE, schema.capacity_forecasts, FORECAST_SOURCES.keys()),
    ],
)
def test_every_column_has_lineage(mapping: lineage.Lineage, table: sa.Table, sources: Iterable[str]) -> None:
    assert set(mapping) == set(table.c.keys())
    used = {source for columns, _ in mapping.values() for source in columns}
    assert used <= set(sources)
