"""End to end: the real daemon (`dagster dev`) tells each failure once, across restarts.

A failed forecast run (launched through the API, as the UI does) and a session that
ended failed while the daemon was down; the daemon is stopped right after the run
failed, before its sensors' next tick, and started twice more. The SMTP server and
the webhook on loopback must have exactly one message per alert key.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.sessions import Outcome, SyncType
from sizeagg_pipeline.defs.sessions.closer import end_session
from sizeagg_pipeline.defs.sessions.executions import Execution
from sizeagg_pipeline_tests.support.channels import smtp_server, webhook_server
from sizeagg_pipeline_tests.support.dagster_processes import DagsterProcesses, running_dagster, wait_for
from sizeagg_pipeline_tests.support.data import add_instances

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:gql")]

LAUNCH = """
mutation($p: ExecutionParams!) {
  launchRun(executionParams: $p) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
TICKS = """
query($s: SensorSelector!) {
  sensorOrError(sensorSelector: $s) {
    ... on Sensor { sensorState { ticks(limit: 5) { timestamp status skipReason } } }
  }
}"""


def _tick_after(dagster: DagsterProcesses, sensor: str, after: float) -> dict[str, Any]:
    selector = {**dagster.repository_selector(), "sensorName": sensor}

    def tick() -> dict[str, Any] | None:
        state = dagster.graphql(TICKS, {"s": selector})["sensorOrError"]["sensorState"]
        done = [t for t in state["ticks"] if t["timestamp"] > after and t["status"] != "STARTED"]
        return done[0] if done else None

    return wait_for(tick, timeout=120, what=f"a tick of {sensor}", interval=1)


def _failing_forecast_run(dagster: DagsterProcesses) -> str:
    params = {
        "selector": {**dagster.repository_selector(), "jobName": "capacity_forecast_job"},
        "runConfigData": {"ops": {"capacity_forecast": {"config": {"window_days": 1}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-03-16"}]},
    }
    result = dagster.graphql(LAUNCH, {"p": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def test_a_restarted_daemon_tells_each_failure_once(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = schema.make_engine(app_url)
    schema.create_missing(engine)
    with engine.begin() as conn:
        add_instances(conn, 3)
    with smtp_server() as smtp, webhook_server() as hook:
        env = {
            "SIZEAGG_DATABASE_URL": app_url,
            "SIZEAGG_DAILY_TICK": "off",
            "SIZEAGG_DIGEST_AT": "off",
            "SIZEAGG_SENSOR_INTERVAL_SECONDS": "5",
            "SIZEAGG_UI_URL": "https://dagster.example.com",
            **smtp.env(),
            **hook.env(),
        }
        # 1. The run fails; the daemon is stopped as soon as Dagster marks it failed.
        with running_dagster(home, env) as dagster:
            _tick_after(dagster, "run_failure_alerts", 0)  # its cursor starts before the failure
            run_id = _failing_forecast_run(dagster)
            instance = dg.DagsterInstance.from_config(str(home))
            try:
                wait_for(
                    lambda: (r := instance.get_run_by_id(run_id)) is not None and r.is_finished,
                    timeout=120,
                    what="the forecast run to fail",
                    interval=0.2,
                )
                assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
            finally:
                instance.dispose()
        # 2. While the daemon is down, a session ends failed.
        execution = Execution("scheduled:2026-03-17", SyncType.SCHEDULED, runs=())
        ended = end_session(engine, execution, Outcome.failed("aggregation failed: e2e"))
        session_key = f"session:{ended.session_id}:{date.today().isoformat()}"
        run_key_prefix = f"run:{run_id}:"

        def told() -> list[str] | None:
            keys = [str(m["X-Sizeagg-Alert"]) for m in smtp.messages]
            ok = any(k.startswith(run_key_prefix) for k in keys) and any(
                k.startswith("session:") for k in keys
            )
            return keys if ok else None

        # 3. Restarted: both are told; more ticks and another restart tell nothing twice.
        with running_dagster(home, env) as dagster:
            wait_for(told, timeout=180, what="the run and session alerts", interval=1)
            for sensor in ("alerts", "run_failure_alerts"):
                _tick_after(dagster, sensor, time.time())
        with running_dagster(home, env) as dagster:
            for sensor in ("alerts", "run_failure_alerts"):
                _tick_after(dagster, sensor, time.time())
    keys = Counter(str(m["X-Sizeagg-Alert"]) for m in smtp.messages)
    assert set(keys.values()) == {1}, keys  # one message per key (missed deadlines included)
    assert any(k.startswith(run_key_prefix) for k in keys) and session_key.split(":")[1] in str(keys)
    assert Counter(h["key"] for h in hook.delivered) == keys
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(sa.select(schema.capacity_alerts.c.key, schema.capacity_alerts.c.status)).all()
        )
    assert statuses == {key: "sent" for key in keys}
    engine.dispose()
