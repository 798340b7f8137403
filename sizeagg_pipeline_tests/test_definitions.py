"""definitions.py: the one Definitions loads, in process and through `dagster`, and names what it must."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.asset_names import AGGREGATES as PERIOD_ASSETS
from sizeagg_pipeline_tests.support.paths import ROOT


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
