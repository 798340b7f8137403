"""The DBA team's webserver, started as docs/operations.md documents it (`dagster-webserver
--read-only`), refuses what would change something: a run launch and a schedule stop answer
Dagster's unauthorized error, and afterwards no run exists and the schedule still runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from sizeagg_pipeline.core import schema
from sizeagg_pipeline_tests.support.dagster_processes import (
    TEST_INSTANCE_YAML,
    free_port,
    start_group,
    stop_group,
    wait_for,
)
from sizeagg_pipeline_tests.support.paths import BIN

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($p: ExecutionParams!) {
  launchPipelineExecution(executionParams: $p) {
    __typename
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}"""
STOP = """
mutation($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}"""
SCHEDULE = """
query($s: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $s) {
    __typename
    ... on Schedule { id scheduleState { id status } }
  }
}"""
LOCATION = {"repositoryLocationName": "sizeagg", "repositoryName": "__repository__"}


class ReadOnly:
    def __init__(self, url: str) -> None:
        self.url = url

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]


def _loaded(url: str) -> bool:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    try:
        data = requests.post(f"{url}/graphql", json={"query": query}, timeout=10).json()["data"]
    except (requests.ConnectionError, requests.Timeout, ValueError, KeyError):
        return False
    return any(e["loadStatus"] == "LOADED" for e in data["workspaceOrError"]["locationEntries"])


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReadOnly, Path]]:
    home = tmp_path_factory.mktemp("read_only_home")
    (home / "dagster.yaml").write_text(TEST_INSTANCE_YAML)
    app_url = f"sqlite:///{home / 'app.db'}"
    schema.create_missing(schema.make_engine(app_url))
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SIZEAGG_DATABASE_URL": app_url}
    # As the read-only unit in docs/operations.md starts it.
    args = [
        str(BIN / "dagster-webserver"),
        "--read-only",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "workspace.yaml",
    ]
    process = start_group(args, env, home / "webserver.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _loaded(url), timeout=180, what="the read-only webserver to load the code location")
        yield ReadOnly(url), home
    finally:
        stop_group(process)


def test_read_only_webserver_refuses_launches_and_schedule_toggles(read_only: tuple[ReadOnly, Path]) -> None:
    server, home = read_only
    selector = {**LOCATION, "scheduleName": "aggregation_tick_daily"}
    before = server.graphql(SCHEDULE, {"s": selector})["scheduleOrError"]
    assert before["__typename"] == "Schedule" and before["scheduleState"]["status"] == "RUNNING"

    launch = server.graphql(
        LAUNCH,
        {
            "p": {
                "selector": {**LOCATION, "pipelineName": "raw_table_checks_job"},
                "runConfigData": "{}",
                "mode": "default",
            }
        },
    )["launchPipelineExecution"]
    assert launch["__typename"] == "UnauthorizedError", launch
    stop = server.graphql(STOP, {"id": before["scheduleState"]["id"]})["stopRunningSchedule"]
    assert stop["__typename"] == "UnauthorizedError", stop

    after = server.graphql(SCHEDULE, {"s": selector})["scheduleOrError"]
    assert after["scheduleState"]["status"] == "RUNNING"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []
