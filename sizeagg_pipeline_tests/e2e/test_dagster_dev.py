"""End to end against a real `dagster dev` (webserver + daemon + code server), driven like a user.

One session-scoped deployment serves every test here (startup costs seconds; the
backfill daemon's 30 s ticks cost more): a temporary DAGSTER_HOME with the test
instance yaml (queued runs dequeued every second), its own SQLite application
database, sensors evaluated every 5 s, the daily tick due since 00:00. Date ranges
are disjoint, so the tests do not see each other's partitions or sessions:

* 2024-04-01..2025-03-31: the mixed one-year backfill of issue 4 (a), then the
  late-data test (c) on 2025-03-05;
* 2025-06 (Q2): a backfill whose upstream partitions fail (issue 3);
* yesterday: the daily tick (b), which the sensor launches as soon as the daemon runs;
* terminate and SIGKILL of a session step held open (issue 3), standalone runs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_graphql import DagsterGraphQLClient

from sizeagg_pipeline.core import aggregation, schema, sessions
from sizeagg_pipeline.core.levels import LEVELS
from sizeagg_pipeline.core.periods import PERIODS, Period, windows_between
from sizeagg_pipeline.core.settings import calendar
from sizeagg_pipeline.defs.schedule.tick import due_day
from sizeagg_pipeline.defs.sessions import vocabulary
from sizeagg_pipeline.defs.sessions.asset import aggregation_session_job
from sizeagg_pipeline_tests.support.dagster_processes import (
    DagsterProcesses,
    descendants,
    running_dagster,
    wait_for,
)
from sizeagg_pipeline_tests.support.data import add_instances, fill_days, slice_rows
from sizeagg_pipeline_tests.support.session_rows import (
    PERIOD_JOB_NAMES,
    SESSION_ASSET,
    assert_ended,
    session_ids_of,
    session_row,
    tick_partitions,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:gql")]

ACTIVE = 3  # i1..i3 active, i4 inactive
OK_RANGES = {  # a year: 365 days, 52 weeks, 12 months, 4 quarters
    Period.DAILY: ("2024-04-01", "2025-03-31"),
    Period.WEEKLY: ("2024-04-01", "2025-03-24"),
    Period.MONTHLY: ("2024-04-01", "2025-03-01"),
    Period.QUARTERLY: ("2024-04-01", "2025-01-01"),
}
FAIL_RANGES = {
    Period.DAILY: ("2025-06-02", "2025-06-15"),
    Period.WEEKLY: ("2025-06-02", "2025-06-09"),
    Period.MONTHLY: ("2025-06-01", "2025-06-01"),
    Period.QUARTERLY: ("2025-04-01", "2025-04-01"),
}
BAD_DAY = date(2025, 6, 10)
LATE_DAY = date(2025, 3, 5)  # a Wednesday inside the successful backfill

LAUNCH = """
mutation($p: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $p) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status numPartitions timestamp endTimestamp
      runs(limit: 100) { runId status jobName startTime endTime assetSelection { path } }
      error { message }
    }
  }
}"""
SENSOR = """
query($s: SensorSelector!) {
  sensorOrError(sensorSelector: $s) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 5) { timestamp status runIds skipReason } } }
  }
}"""


@dataclass
class Deployment:
    dagster: DagsterProcesses
    engine: sa.Engine
    instance: dg.DagsterInstance
    app_url: str
    yesterday: date

    @property
    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.dagster.port)

    def sensor_selector(self, name: str) -> dict[str, str]:
        return {**self.dagster.repository_selector(), "sensorName": name}

    def session_of(self, execution_id: str) -> str | None:
        ids = session_ids_of(self.engine, execution_id)
        assert len(ids) <= 1, f"{execution_id} has {len(ids)} sessions"
        return ids[0] if ids else None

    def ended_session(self, execution_id: str, timeout: float) -> str:
        """Wait until the execution's session exists and is no longer running."""

        def ended() -> str | None:
            session_id = self.session_of(execution_id)
            if session_id and session_row(self.engine, session_id)["status"] != "running":
                return session_id
            return None

        try:
            return wait_for(ended, timeout=timeout, what=f"the session of {execution_id}", interval=1)
        except TimeoutError:
            print(self.dagster.log_tail())
            raise


def _seed(engine: sa.Engine, yesterday: date) -> None:
    with engine.begin() as conn:
        ids = add_instances(conn, 4, inactive=(4,))
        fill_days(conn, ids, date(2024, 3, 25), date(2025, 4, 6), databases=2)
        fill_days(conn, ids, date(2025, 6, 2), date(2025, 6, 15), databases=2)
        fill_days(conn, ids, yesterday - timedelta(days=9), yesterday, databases=2)
        stats = schema.database_size_stats
        conn.execute(
            sa.update(stats)
            .where(
                stats.c.instance_id == 2, stats.c.database_name == "db1", stats.c.collected_date == BAD_DAY
            )
            .values(size_mb=-3)
        )


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("e2e_dagster_home")
    app_url = f"sqlite:///{home / 'app.db'}"
    engine = schema.make_engine(app_url)
    schema.create_missing(engine)
    # The tick schedules fire a few minutes from now (cron minutes): long enough for the
    # deployment to start, so the scheduler sees them running before their first tick.
    tick_at = (datetime.now(calendar().tz) + timedelta(minutes=3)).replace(second=0, microsecond=0)
    yesterday = due_day(tick_at, tick_at.time())
    _seed(engine, yesterday)
    env = {
        "SIZEAGG_DATABASE_URL": app_url,
        "SIZEAGG_DAILY_TICK": f"{tick_at:%H:%M}",
        "SIZEAGG_SENSOR_INTERVAL_SECONDS": "5",
        "SIZEAGG_JANITOR_INTERVAL_SECONDS": "10",
        "SIZEAGG_OBSERVE_INTERVAL_SECONDS": "5",
        "SIZEAGG_LATE_DATA_DAYS": "1000",
    }
    with running_dagster(home, env) as dagster:
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            yield Deployment(dagster, engine, instance, app_url, yesterday)
        finally:
            instance.dispose()
            engine.dispose()


def _next_tick(deployment: Deployment, sensor: str, after: float) -> dict[str, Any]:
    """The first finished tick of `sensor` that started after `after` (epoch seconds)."""
    selector = deployment.sensor_selector(sensor)

    def tick() -> dict[str, Any] | None:
        state = deployment.dagster.graphql(SENSOR, {"s": selector})["sensorOrError"]["sensorState"]
        ticks = [t for t in state["ticks"] if t["timestamp"] > after and t["status"] != "STARTED"]
        return ticks[-1] if ticks else None

    return wait_for(tick, timeout=90, what=f"a tick of {sensor}", interval=1)


def _launch_backfill(deployment: Deployment, ranges: dict[Period, tuple[str, str]], title: str) -> str:
    entries: list[dict[str, Any]] = [
        {"assetKey": {"path": [level.asset_name(period)]}, "partitions": {"range": {"start": a, "end": b}}}
        for period, (a, b) in ranges.items()
        for level in LEVELS
    ]
    entries.append({"assetKey": {"path": [SESSION_ASSET]}})
    data = deployment.dagster.graphql(LAUNCH, {"p": {"partitionsByAssets": entries, "title": title}})
    result = data["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


@pytest.fixture(scope="session")
def backfills(deployment: Deployment) -> dict[str, tuple[str, float]]:
    """Both backfills launched at once (their daemon ticks overlap): name → (id, launch time)."""
    ok = _launch_backfill(deployment, OK_RANGES, "e2e: a year, all periods, session")
    ok_at = time.monotonic()
    failing = _launch_backfill(deployment, FAIL_RANGES, "e2e: a partition fails")
    return {"ok": (ok, ok_at), "failing": (failing, time.monotonic())}


def _finished_backfill(deployment: Deployment, backfill_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        backfill = deployment.dagster.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    try:
        return wait_for(finished, timeout=timeout, what=f"backfill {backfill_id}", interval=2)
    except TimeoutError:
        print(deployment.dagster.log_tail())
        raise


def _reference_slices(deployment: Deployment, tmp_path: Path, ranges: dict[Period, tuple[str, str]]) -> None:
    """The aggregate slices equal a clean in-process recomputation on a copy of the raw data."""
    copy = tmp_path / "reference.db"
    source_path = deployment.app_url.removeprefix("sqlite:///")
    with sqlite3.connect(source_path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    reference = schema.make_engine(f"sqlite:///{copy}")
    try:
        with reference.begin() as conn:
            conn.execute(sa.delete(schema.database_size_aggregations))
            conn.execute(sa.delete(schema.instance_size_aggregations))
        for period, (first, last) in ranges.items():
            for level in LEVELS:
                aggregation.aggregate(reference, level, windows_between(period, first, last))
        with deployment.engine.connect() as a, reference.connect() as b:
            for period, (first, last) in ranges.items():
                for window in windows_between(period, first, last):
                    for level in LEVELS:
                        got = slice_rows(a, level.target, period.value, window.start)
                        want = slice_rows(b, level.target, period.value, window.start)
                        assert got == want, f"{level.name} {period} {window.key}"
                        expected = 8 if level.name == "database" else 4  # 4 instances (inactive too)
                        assert len(got) == expected, f"{level.name} {period} {window.key}"
    finally:
        reference.dispose()


SENSORS = """
query($r: RepositorySelector!) {
  sensorsOrError(repositorySelector: $r) {
    __typename
    ... on Sensors { results { name sensorState { status } } }
  }
}"""


SCHEDULES = """
query($r: RepositorySelector!) {
  schedulesOrError(repositorySelector: $r) {
    __typename
    ... on Schedules { results { name cronSchedule executionTimezone scheduleState { status } } }
  }
}"""
DRY_RUN = """
mutation($s: ScheduleSelector!, $t: Float) {
  scheduleDryRun(selectorData: $s, timestamp: $t) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { runRequests { runKey } skipReason error { message } }
    }
    ... on PythonError { message }
  }
}"""


def test_every_schedule_runs_on_a_fresh_deployment(deployment: Deployment) -> None:
    """The four tick schedules, the forecast's and both retentions' are RUNNING, in business time."""
    data = deployment.dagster.graphql(SCHEDULES, {"r": deployment.dagster.repository_selector()})
    found = {
        s["name"]: (s["scheduleState"]["status"], s["executionTimezone"])
        for s in data["schedulesOrError"]["results"]
    }
    zone = calendar().timezone
    assert found == {
        **{f"aggregation_tick_{p}": ("RUNNING", zone) for p in PERIODS},
        "capacity_forecast_schedule": ("RUNNING", zone),
        "retention_schedule": ("RUNNING", zone),
        "dagster_run_retention": ("RUNNING", zone),
    }


def test_every_sensor_runs_on_a_fresh_deployment(deployment: Deployment) -> None:
    """Nobody switched anything on: the gate and every safety net are RUNNING."""
    data = deployment.dagster.graphql(SENSORS, {"r": deployment.dagster.repository_selector()})
    states = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
    assert states == {
        name: "RUNNING"
        for name in (
            "aggregation_gate",
            "raw_data_changes",
            "backfill_sessions",
            "aggregation_session_failed",
            "aggregation_session_cancelled",
            "session_janitor",
            "dead_run_healer",
            "alerts",
            "run_failure_alerts",
            "freshness_checks_sensor",
            "capacity_digest",
        )
    }


# --------------------------------------------------------------------------- issue 4 (a)


def test_mixed_backfill_from_the_api_runs_once_per_period_and_ends_with_one_session(
    deployment: Deployment,
    backfills: dict[str, tuple[str, float]],
    tmp_path: Path,
    record_property: Any,
) -> None:
    backfill_id, launched = backfills["ok"]
    backfill = _finished_backfill(deployment, backfill_id, timeout=420)
    seconds = time.monotonic() - launched
    runs = backfill["runs"]
    record_property("backfill_seconds", round(seconds, 1))
    record_property("backfill_runs", len(runs))
    print(f"\nmixed backfill of a year (365 daily partitions): {seconds:.0f} s, {len(runs)} runs")
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert {r["status"] for r in runs} == {"SUCCESS"}
    selections = sorted(tuple(sorted(p["path"][0] for p in r["assetSelection"])) for r in runs)
    assert selections == sorted(
        [(SESSION_ASSET,)] + [tuple(sorted(level.asset_name(p) for level in LEVELS)) for p in PERIODS]
    )  # one run per period (both levels, the whole range) and one session run
    session_run = next(r for r in runs if r["assetSelection"][0]["path"][0] == SESSION_ASSET)
    # Dagster may start the session step while a period run still evaluates its checks;
    # the step waits for every run of its execution, so it ends after all of them.
    assert all(session_run["endTime"] >= r["endTime"] for r in runs if r is not session_run)

    _reference_slices(deployment, tmp_path, OK_RANGES)

    session_id = deployment.session_of(f"backfill:{backfill_id}")
    assert session_id is not None
    records = assert_ended(deployment.engine, session_id, "completed", total=ACTIVE)
    assert session_row(deployment.engine, session_id)["sync_type"] == "manual_task"
    # per instance: 365 days + 52 weeks + 12 months + 4 quarters, (2 databases + 1 instance row) each
    assert [r["items_synced"] for r in records] == [1299, 1299, 1299]
    details = records[0]["sync_details"]
    assert details["periods"]["daily"]["partitions"] == ["2024-04-01...2025-03-31"]
    assert details["periods"]["quarterly"]["partitions"] == ["2024-04-01...2025-01-01"]
    assert details["session_run_id"] == session_run["runId"]


# --------------------------------------------------------------------------- issue 3, upstream in a backfill


def test_backfill_whose_upstream_fails_still_gets_one_failed_session(
    deployment: Deployment, backfills: dict[str, tuple[str, float]]
) -> None:
    backfill_id, _ = backfills["failing"]
    backfill = _finished_backfill(deployment, backfill_id, timeout=420)
    assert backfill["status"] == "COMPLETED_FAILED", backfill
    selected = [r["assetSelection"][0]["path"][0] for r in backfill["runs"]]
    assert SESSION_ASSET not in selected  # the session step never ran
    session_id = deployment.ended_session(f"backfill:{backfill_id}", timeout=120)
    records = assert_ended(deployment.engine, session_id, "failed", total=ACTIVE)
    message = records[0]["error_message"]
    for text in (
        "daily partition 2025-06-02...2025-06-15",
        "weekly partition 2025-06-02...2025-06-09",
        "monthly partition 2025-06-01",
        "quarterly partition 2025-04-01",
        "negative size_mb",
        "2025-06-10",
    ):
        assert text in message, message
    # the sensor looks again on its next tick: still exactly one session
    _next_tick(deployment, "backfill_sessions", after=time.time())
    assert session_ids_of(deployment.engine, f"backfill:{backfill_id}") == [session_id]


# --------------------------------------------------------------------------- issue 4 (b)


def test_daily_tick_launches_one_execution_and_the_gate_writes_its_session(deployment: Deployment) -> None:
    day = deployment.yesterday
    execution_id = f"scheduled:{day}"
    session_id = deployment.ended_session(execution_id, timeout=300)
    records = assert_ended(deployment.engine, session_id, "completed", total=ACTIVE)
    assert session_row(deployment.engine, session_id)["sync_type"] == "scheduled_task"
    assert [r["items_synced"] for r in records] == [12, 12, 12]

    runs = _finished_runs(deployment, execution_id, count=5)
    period_runs = {r.job_name: r for r in runs if r.job_name in PERIOD_JOB_NAMES}
    keys = tick_partitions(day)
    assert {name: r.tags["dagster/partition"] for name, r in period_runs.items()} == {
        f"{p}_aggregation_job": key for p, key in keys.items()
    }
    assert {r.tags["dagster/schedule_name"] for r in period_runs.values()} == {
        f"aggregation_tick_{p}" for p in PERIODS
    }
    assert {r.tags["dagster/run_key"] for r in period_runs.values()} == {f"tick:{day}:{p}" for p in PERIODS}
    [session_run] = [r for r in runs if r.job_name == aggregation_session_job.name]
    assert session_run.tags["dagster/sensor_name"] == "aggregation_gate"
    assert session_run.status == dg.DagsterRunStatus.SUCCESS

    # The same tick evaluated again (the UI's "Test schedule"): the day is done, nothing to launch.
    # A dry run evaluates the first tick after its timestamp: the end of `day` is followed
    # by the tick of the next morning, whose due day is `day`.
    tick_time = datetime.combine(day + timedelta(days=1), time_of_day(0, 0), calendar().tz) - timedelta(
        seconds=1
    )
    for period in PERIODS:
        selector = {**deployment.dagster.repository_selector(), "scheduleName": f"aggregation_tick_{period}"}
        result = deployment.dagster.graphql(DRY_RUN, {"s": selector, "t": tick_time.timestamp()})
        evaluation = result["scheduleDryRun"]["evaluationResult"]
        assert evaluation["runRequests"] == [], evaluation
        assert f"{day} already completed (session {session_id})" in evaluation["skipReason"], evaluation
    again = deployment.instance.get_runs(dg.RunsFilter(tags={vocabulary.EXECUTION_TAG: execution_id}))
    assert sorted(r.run_id for r in again) == sorted(r.run_id for r in runs)
    assert session_ids_of(deployment.engine, execution_id) == [session_id]


# --------------------------------------------------------------------------- issue 4 (c)


def _finished_runs(deployment: Deployment, execution_id: str, count: int) -> list[dg.DagsterRun]:
    """The execution's runs once all `count` have finished: the session row is written inside
    the session run's step, so the row can be seen a moment before that run ends."""

    def finished() -> list[dg.DagsterRun] | None:
        runs = deployment.instance.get_runs(dg.RunsFilter(tags={vocabulary.EXECUTION_TAG: execution_id}))
        return list(runs) if len(runs) == count and all(r.is_finished for r in runs) else None

    return wait_for(finished, timeout=120, what=f"{count} finished runs of {execution_id}", interval=0.5)


def _quiet(deployment: Deployment) -> bool:
    busy = deployment.instance.get_runs(
        dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.CANCELING,
            ]
        )
    )
    return not busy


def test_corrected_raw_rows_re_materialize_exactly_the_affected_partitions(
    deployment: Deployment, backfills: dict[str, tuple[str, float]]
) -> None:
    assert _finished_backfill(deployment, backfills["ok"][0], timeout=420)["status"] == "COMPLETED_SUCCESS"
    _finished_backfill(deployment, backfills["failing"][0], timeout=420)
    wait_for(lambda: _quiet(deployment), timeout=300, what="no run in progress", interval=1)
    agg = schema.database_size_aggregations
    where = (agg.c.instance_id == 1, agg.c.database_name == "db0", agg.c.period_type == "daily")
    before_storage_id = deployment.instance.event_log_storage.get_maximum_record_id() or 0
    started = time.time()

    stats = schema.database_size_stats
    with deployment.engine.begin() as conn:
        conn.execute(
            sa.update(stats)
            .where(
                stats.c.instance_id == 1, stats.c.database_name == "db0", stats.c.collected_date == LATE_DAY
            )
            .values(size_mb=50_000)
        )

    def late_execution() -> str | None:
        runs = deployment.instance.get_runs(dg.RunsFilter(tags={vocabulary.TRIGGER_TAG: "late_data"}))
        return runs[0].tags[vocabulary.EXECUTION_TAG] if runs else None

    execution_id = wait_for(late_execution, timeout=120, what="the late-data runs", interval=1)
    session_id = deployment.ended_session(execution_id, timeout=240)
    print(f"\nlate data: session {time.time() - started:.0f} s after the correction")
    records = assert_ended(deployment.engine, session_id, "completed", total=ACTIVE)
    assert records[0]["sync_details"]["periods"]["daily"]["partitions"] == ["2025-03-05...2025-03-06"]
    assert [r["items_synced"] for r in records] == [12, 12, 12]  # database rows: (2 + 2 + 1 + 1) x 2

    materialized = {}
    for level in LEVELS:
        for period in PERIODS:
            key = dg.AssetKey(level.asset_name(period))
            keys = deployment.instance.get_materialized_partitions(key, after_cursor=before_storage_id)
            if keys:
                materialized[key.to_user_string()] = keys
    # only database_size_stats changed, so only database-level partitions; the instance-level
    # Q2 2025 exists (only its database level failed in that backfill) and is left alone
    assert materialized == {
        "database_size_daily": {"2025-03-05", "2025-03-06"},  # the day, and the next day's comparison
        "database_size_weekly": {"2025-03-03", "2025-03-10"},
        "database_size_monthly": {"2025-03-01"},  # April 2025 was never aggregated: not computed now
        "database_size_quarterly": {"2025-01-01"},  # Q2 2025 never materialized at this level
    }
    runs = _finished_runs(deployment, execution_id, count=5)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    with deployment.engine.connect() as conn:
        values = dict(conn.execute(sa.select(agg.c.period_start, agg.c.max_size_mb).where(*where)).all())
        change = conn.execute(
            sa.select(agg.c.size_change_mb).where(*where, agg.c.period_start == date(2025, 3, 6))
        ).scalar_one()
    assert values[LATE_DAY] == 50_000
    assert change < -40_000  # 2025-03-06 compared with the corrected 2025-03-05


# --------------------------------------------------------------------------- issue 3, real processes


def _held_session_run(deployment: Deployment) -> tuple[str, str]:
    """Launch a session step that holds its session open; return (run id, session id)."""
    run_id = deployment.client.submit_job_execution(
        aggregation_session_job.name,
        run_config={"ops": {SESSION_ASSET: {"config": {"hold_seconds": 600, "date": "2025-03-10"}}}},
    )

    def opened() -> str | None:
        with deployment.engine.connect() as conn:
            return sessions.session_for_run(conn, run_id)

    try:
        session_id = wait_for(opened, timeout=120, what=f"run {run_id} to open its session", interval=0.5)
    except TimeoutError:
        print(deployment.dagster.log_tail())
        raise
    assert session_row(deployment.engine, session_id)["status"] == "running"
    return run_id, session_id


def _run_status(deployment: Deployment, run_id: str) -> dg.DagsterRunStatus:
    run = deployment.instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def test_terminate_from_the_api_while_the_session_step_runs(deployment: Deployment) -> None:
    run_id, session_id = _held_session_run(deployment)
    deployment.client.terminate_run(run_id)
    wait_for(
        lambda: session_row(deployment.engine, session_id)["status"] != "running",
        timeout=120,
        what="the terminated session to end",
    )
    records = assert_ended(deployment.engine, session_id, "cancelled", total=ACTIVE)
    assert {r["error_message"] for r in records} == {"cancelled by user"}  # the step's own handler
    wait_for(
        lambda: _run_status(deployment, run_id) == dg.DagsterRunStatus.CANCELED,
        timeout=60,
        what="the run to be CANCELED",
    )


def test_sigkill_of_the_run_worker_leaves_no_running_session(deployment: Deployment) -> None:
    run_id, session_id = _held_session_run(deployment)
    [started] = [
        r.message
        for r in deployment.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if r.message.startswith("Started process for run (pid: ")
    ]
    pid = int(started.removeprefix("Started process for run (pid: ").rstrip(")."))
    tree = [*descendants(pid), pid]
    for victim in tree:  # a lost worker host: the whole tree dies, nothing runs a handler
        os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: session_row(deployment.engine, session_id)["status"] != "running",
        timeout=120,
        what="a sensor to finalise the killed session",
    )
    records = assert_ended(deployment.engine, session_id, "failed", total=ACTIVE)
    message = records[0]["error_message"]
    assert f"session step run {run_id[:8]} ended FAILURE" in message, message
    assert "was terminated by signal 9 (SIGKILL)" in message, message
    assert _run_status(deployment, run_id) == dg.DagsterRunStatus.FAILURE
    assert not any(_alive(p) for p in tree)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
