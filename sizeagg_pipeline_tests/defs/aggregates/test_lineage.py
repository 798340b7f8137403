"""defs/aggregates/lineage.py: every asset carries its description, owners, group, kinds and table schema.

The lineage maps themselves are checked in core/test_lineage.py, what the UI
shows in e2e/test_lineage_ui.py.
"""

from __future__ import annotations

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.asset_names import AGGREGATES, GROUPS


def test_every_asset_carries_its_metadata() -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        *AGGREGATES,
        "database_size_stats",
        "instance_size_stats",
        "aggregation_session",
        "capacity_forecast",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.owners == ["team:dba-platform"], key
        assert node.group_name in GROUPS, key
        assert {"sql"} < set(node.kinds) and set(node.kinds) & {"sqlite", "postgres"}, key
        table = schema.metadata.tables[node.metadata["dagster/table_name"]]
        columns = [c.name for c in node.metadata["dagster/column_schema"].columns]
        assert columns == list(table.c.keys()), key
