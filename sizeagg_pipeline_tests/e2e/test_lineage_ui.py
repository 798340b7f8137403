"""Lineage as the UI sees it: asset nodes, column lineage and checks served by a real webserver.

The metadata the assets carry is checked in process in defs/aggregates/test_lineage.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sizeagg_pipeline_tests.support.asset_names import AGGREGATES, GROUPS
from sizeagg_pipeline_tests.support.dagster_processes import DagsterProcesses, running_dagster

QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    kinds
    owners { ... on TeamAssetOwner { team } }
    dependencyKeys { path }
    metadataEntries {
      label
      ... on TableColumnLineageMetadataEntry {
        lineage { columnName columnDeps { assetKey { path } columnName } }
      }
      ... on TableSchemaMetadataEntry { schema { columns { name type } } }
    }
    assetChecksOrError { ... on AssetChecks { checks { name blocking description } } }
  }
}
"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterProcesses]:
    """The UI's webserver (dagster dev) with its own DAGSTER_HOME and application database."""
    tmp = tmp_path_factory.mktemp("webserver")
    env = {"SIZEAGG_DATABASE_URL": f"sqlite:///{tmp / 'app.db'}", "SIZEAGG_DAILY_TICK": "off"}
    with running_dagster(tmp / "dagster_home", env) as dagster:
        yield dagster


@pytest.mark.slow
def test_lineage_as_the_ui_sees_it(webserver: DagsterProcesses) -> None:
    nodes = {"/".join(n["assetKey"]["path"]): n for n in webserver.graphql(QUERY)["assetNodes"]}
    assert set(nodes) >= {*AGGREGATES, "database_size_stats", "capacity_forecast", "aggregation_session"}
    for name, node in nodes.items():
        assert node["description"] and node["groupName"] in GROUPS, name
        assert {"team": "dba-platform"} in node["owners"], name
        assert "sql" in node["kinds"] and ("sqlite" in node["kinds"] or "postgres" in node["kinds"]), name
        labels = {e["label"] for e in node["metadataEntries"]}
        assert "dagster/column_schema" in labels, name

    def upstream(name: str) -> set[str]:
        return {"/".join(k["path"]) for k in nodes[name]["dependencyKeys"]}

    def column_lineage(name: str) -> dict[str, set[tuple[str, str]]]:
        (entry,) = [e for e in nodes[name]["metadataEntries"] if e["label"] == "dagster/column_lineage"]
        return {
            c["columnName"]: {("/".join(d["assetKey"]["path"]), d["columnName"]) for d in c["columnDeps"]}
            for c in entry["lineage"]
        }

    def check_names(name: str) -> dict[str, bool]:
        return {c["name"]: c["blocking"] for c in nodes[name]["assetChecksOrError"]["checks"]}

    assert upstream("database_size_weekly") == {"database_size_stats"}
    assert upstream("instance_size_monthly") == {"instance_size_stats"}
    assert upstream("capacity_forecast") == {"database_size_daily", "instance_size_daily"}
    assert upstream("aggregation_session") == set(AGGREGATES)

    weekly = column_lineage("database_size_weekly")
    assert weekly["avg_size_mb"] == {("database_size_stats", "size_mb")}
    assert weekly["avg_log_size_mb"] == {("database_size_stats", "log_size_mb")}
    assert weekly["data_count"] == {("database_size_stats", "collected_date")}
    assert column_lineage("instance_size_daily")["avg_size_mb"] == {
        ("instance_size_stats", "total_size_mb"),
        ("instance_size_stats", "database_count"),
    }
    assert ("database_size_daily", "avg_size_mb") in column_lineage("capacity_forecast")["slope_mb_per_day"]
    assert ("instance_size_daily", "total_size_mb") in column_lineage("capacity_forecast")["slope_mb_per_day"]

    assert check_names("database_size_daily") == {
        "raw_rows_valid": True,
        "data_count_matches_raw": False,
        "one_row_per_database": False,
        "complete_raw_history": False,
        "freshness_check": False,
    }
    assert check_names("instance_size_quarterly") == {
        "raw_rows_valid": True,
        "data_count_matches_raw": False,
        "one_row_per_instance": False,
        "complete_raw_history": False,
        "freshness_check": False,
    }
    assert check_names("database_size_stats") == {"no_invalid_rows": False}
    assert check_names("aggregation_session") == {
        "counts_add_up": False,
        "no_session_running_too_long": False,
    }
