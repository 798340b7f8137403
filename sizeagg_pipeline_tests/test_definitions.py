"""The Definitions load, and name what the issues require."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from sizeagg_pipeline import defs

ROOT = Path(__file__).resolve().parent.parent
PERIOD_ASSETS = [
    f"{level}_size_{period}"
    for level in ("database", "instance")
    for period in ("daily", "weekly", "monthly", "quarterly")
]


def test_definitions_validate() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_keys_and_jobs() -> None:
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(PERIOD_ASSETS) <= keys
    assert {"database_size_stats", "instance_size_stats", "aggregation_session"} <= keys
    for period in ("daily", "weekly", "monthly", "quarterly"):
        job = defs.resolve_job_def(f"{period}_aggregation_job")
        selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
        assert selected == {f"database_size_{period}", f"instance_size_{period}"}
    assert defs.resolve_job_def("aggregation_session_job")


def test_session_asset_depends_on_all_eight() -> None:
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("aggregation_session")).parent_keys}
    assert parents == set(PERIOD_ASSETS)


def test_weekly_partitions_start_on_monday() -> None:
    weekly = defs.resolve_assets_def("database_size_weekly").partitions_def
    keys = weekly.get_partition_keys()
    assert keys[0] == "2024-01-01"  # a Monday
    assert keys[1] == "2024-01-08"
    quarterly = defs.resolve_assets_def("database_size_quarterly").partitions_def
    assert quarterly.get_partition_keys()[:4] == ["2024-01-01", "2024-04-01", "2024-07-01", "2024-10-01"]


def test_dagster_cli_validates_the_workspace(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
