"""The UI after the demo's commands, as a DBA meets it: through the webserver's GraphQL API, and
in a headless browser.

The module runs what `make demo` runs (init-db, quarter-aligned demo data, start-date,
`sizeagg run` for the last days, scripts/demo_insight.py; two tick days instead of
fifteen, 8 instances instead of 20) into its own DAGSTER_HOME, then starts `dagster dev` on it like `make ui`:

* every aggregate and the forecast have at least 90 % of their partitions materialized;
* every non-blocking check can be executed on its own, and executing one the way the
  Checks tab does records its evaluation;
* the tick schedules' next tick is at the configured business time, and a dry run of the
  tick for a day the demo completed launches nothing (and nothing was launched);
* the weekly aggregate's page labels its chart, and the forecast's table fits its panel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from types import ModuleType
from typing import Any

import dagster as dg
import pytest

from sizeagg_pipeline.core.settings import calendar
from sizeagg_pipeline_tests.support.asset_names import AGGREGATES
from sizeagg_pipeline_tests.support.dagster_processes import DagsterProcesses, running_dagster, wait_for
from sizeagg_pipeline_tests.support.paths import BIN, ROOT

# The demo's commands run in the first test's setup: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

NODES = """
{
  assetNodes {
    assetKey { path }
    partitionStats { numMaterialized numPartitions numFailed }
    assetChecksOrError { ... on AssetChecks { checks { name blocking canExecuteIndividually jobNames } } }
  }
}"""
LAUNCH = """
mutation($p: ExecutionParams!) {
  launchPipelineExecution(executionParams: $p) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }
"""
CHECK_EXECUTIONS = """
query($a: AssetKeyInput!, $c: String!) {
  assetCheckExecutions(assetKey: $a, checkName: $c, limit: 1) {
    runId status evaluation { description metadataEntries { label } }
  }
}"""
SCHEDULE = """
query($s: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $s) {
    ... on Schedule { executionTimezone futureTicks(limit: 2) { results { timestamp } } }
  }
}"""
DRY_RUN = """
mutation($s: ScheduleSelector!, $t: Float) {
  scheduleDryRun(selectorData: $s, timestamp: $t) {
    __typename
    ... on DryRunInstigationTick { evaluationResult { runRequests { runKey } skipReason error { message } } }
    ... on PythonError { message }
  }
}"""
PERIODS = ("daily", "weekly", "monthly", "quarterly")


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterProcesses]:
    home = tmp_path_factory.mktemp("demo") / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SIZEAGG_DATABASE_URL": f"sqlite:///{home.parent / 'sizeagg.db'}",
    }
    env.pop("SIZEAGG_START_DATE", None)
    sizeagg = str(BIN / "sizeagg")
    _run([sizeagg, "init-db"], env)
    _run(
        [
            sizeagg,
            "demo-data",
            "--instances",
            "20",
            "--databases",
            "15",
            "--days",
            "120",
            "--quarter-aligned",
        ],
        env,
    )
    env["SIZEAGG_START_DATE"] = _run([sizeagg, "start-date"], env).strip()
    yesterday = calendar().yesterday()
    _run([sizeagg, "run", "--date", f"{yesterday - timedelta(days=1)}..{yesterday}"], env)
    _run([str(BIN / "python"), "scripts/demo_insight.py"], env)
    with running_dagster(
        home, {k: env[k] for k in ("SIZEAGG_DATABASE_URL", "SIZEAGG_START_DATE")}
    ) as dagster:
        yield dagster


def _nodes(demo: DagsterProcesses) -> dict[str, dict[str, Any]]:
    return {"/".join(n["assetKey"]["path"]): n for n in demo.graphql(NODES)["assetNodes"]}


def test_every_aggregate_and_the_forecast_show_their_partitions_materialized(demo: DagsterProcesses) -> None:
    nodes = _nodes(demo)
    for name in [*AGGREGATES, "capacity_forecast"]:
        stats = nodes[name]["partitionStats"]
        share = stats["numMaterialized"] / stats["numPartitions"]
        assert share >= 0.9 and stats["numFailed"] == 0, (name, stats)


def test_every_non_blocking_check_executes_on_its_own(demo: DagsterProcesses) -> None:
    nodes = _nodes(demo)
    checks = [(name, c) for name, n in nodes.items() for c in n["assetChecksOrError"].get("checks", [])]
    assert len(checks) == 8 * 5 + 2 + 2  # per aggregate: three window checks, raw_rows_valid, freshness
    for name, check in checks:
        expected = "REQUIRES_MATERIALIZATION" if check["blocking"] else "CAN_EXECUTE"
        assert check["canExecuteIndividually"] == expected, (name, check)

    # What the Checks tab's "Execute" sends: the check alone, in a job that holds it, no config.
    [check] = [
        c for name, c in checks if name == "database_size_weekly" and c["name"] == "data_count_matches_raw"
    ]
    selector = {
        **demo.repository_selector(),
        "jobName": check["jobNames"][0],
        "assetSelection": [],
        "assetCheckSelection": [{"assetKey": {"path": ["database_size_weekly"]}, "name": check["name"]}],
    }
    launched = demo.graphql(LAUNCH, {"p": {"selector": selector, "runConfigData": "{}", "mode": "default"}})
    result = launched["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]

    def finished() -> str | None:
        status = demo.graphql(RUN, {"id": run_id})["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert wait_for(finished, timeout=180, what="the check's run") == "SUCCESS"
    [execution] = demo.graphql(
        CHECK_EXECUTIONS, {"a": {"path": ["database_size_weekly"]}, "c": "data_count_matches_raw"}
    )["assetCheckExecutions"]
    assert execution["runId"] == run_id and execution["status"] == "SUCCEEDED", execution
    labels = {e["label"] for e in execution["evaluation"]["metadataEntries"]}
    assert {"windows_checked", "failing_windows", "windows"} <= labels
    assert "of weekly" in execution["evaluation"]["description"]


def test_the_tick_schedules_show_their_next_tick_and_skip_the_demos_days(demo: DagsterProcesses) -> None:
    zone = calendar().tz
    yesterday = calendar().yesterday()
    for period in PERIODS:
        selector = {**demo.repository_selector(), "scheduleName": f"aggregation_tick_{period}"}
        schedule = demo.graphql(SCHEDULE, {"s": selector})["scheduleOrError"]
        assert schedule["executionTimezone"] == calendar().timezone
        for tick in schedule["futureTicks"]["results"]:
            assert datetime.fromtimestamp(tick["timestamp"], zone).time() == time(4, 0)
        # today's 04:00 tick is for yesterday, which the demo's `sizeagg run` completed
        at = datetime.combine(yesterday + timedelta(days=1), time(4, 0), zone).timestamp()
        result = demo.graphql(DRY_RUN, {"s": selector, "t": at})["scheduleDryRun"]
        evaluation = result["evaluationResult"]
        assert evaluation["runRequests"] == [], evaluation
        assert f"{yesterday} already completed" in evaluation["skipReason"], evaluation
    with dg.DagsterInstance.from_config(str(demo.home)) as instance:
        assert instance.get_runs(dg.RunsFilter(tags={"sizeagg/trigger": "tick"})) == []


def _screenshots() -> ModuleType:
    """scripts/screenshots.py (a script, not a package module), with its sibling render_lineage."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts" / "screenshots.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="no headless Chromium (Debian: apt-get install chromium; .ci/run installs it)",
)
def test_the_asset_pages_label_the_chart_and_fit_the_forecast_table(demo: DagsterProcesses) -> None:
    screenshots = _screenshots()
    with screenshots.browser() as page:
        page.open(f"{demo.url}/assets/database_size_weekly", ["Top 10 growth, weekly — chart"])
        assert page.evaluate("document.body.innerText.includes('Top 10 growth, weekly — table')")
        page.open(f"{demo.url}/assets/capacity_forecast", ["days left"])
        assert page.clipped("days left") == "fits"
        assert page.clipped("MB/day") == "fits"
