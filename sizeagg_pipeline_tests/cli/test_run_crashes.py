"""cli/run.py: `sizeagg run` killed with SIGKILL never wedges the next one.

Four real processes are killed at once, each holding an `app_db` slot (the shipped
limit): three while their session step holds its session, one while a period step
waits on a lock. The next `sizeagg run` heals all of it before it starts — runs
FAILURE, slots free, every session failed with the reason — and completes. A run
that waits for a slot says who holds it, and heals the holders once they die.
The daemon doing the same without the CLI is in e2e/test_dead_runs.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.defs.aggregates.assets import APP_DB_POOL
from sizeagg_pipeline_tests.support.crashes import (
    assert_healed,
    cli_env,
    kill,
    start_cli,
    start_holders,
    wedged,
)
from sizeagg_pipeline_tests.support.dagster_processes import wait_for
from sizeagg_pipeline_tests.support.data import three_active_one_inactive
from sizeagg_pipeline_tests.support.execution import DAY
from sizeagg_pipeline_tests.support.session_rows import all_session_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 active, 4 inactive; two databases each, every day since 2026-02-20."""
    return three_active_one_inactive(engine)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "dagster_home"


@pytest.fixture
def instance(home: Path, app_url: str) -> Iterator[dg.DagsterInstance]:
    cli_env(app_url, home)  # writes the shipped dagster.yaml into home
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _finish(proc: subprocess.Popen[str], log: Path, timeout: float = 300) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill([proc])
        pytest.fail(f"sizeagg run still running after {timeout} s:\n{log.read_text()}")
    output = log.read_text()
    assert proc.returncode == 0, output
    return output


def test_four_killed_runs_are_healed_by_the_next_sizeagg_run(
    data: sa.Engine, app_url: str, home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    env = cli_env(app_url, home)
    with wedged(data, instance, env, DAY, tmp_path) as wedge:
        pids = [p.pid for p in wedge.procs]
        kill(wedge.procs)  # a lost host, an OOM kill, Ctrl-C twice
    info = instance.event_log_storage.get_concurrency_info(APP_DB_POOL)
    assert len(info.claimed_slots) == info.limit == 4  # what used to make every later run wait for ever

    log = tmp_path / "next.log"
    output = _finish(start_cli(env, DAY, log), log)
    assert "completed: 3 instances, 3 succeeded, 0 failed" in output, output
    healed = [line for line in output.splitlines() if line.startswith("sizeagg run: healed run ")]
    assert len(healed) == 4, output
    assert all("1 app_db slot(s) freed" in line for line in healed), output
    assert_healed(data, instance, pids)
    statuses = sorted(s["status"] for s in all_session_rows(data))
    assert statuses == ["completed", "failed", "failed", "failed", "failed"]


def test_a_run_waiting_for_a_slot_says_who_holds_it_and_heals_them_when_they_die(
    data: sa.Engine, app_url: str, home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    env = cli_env(app_url, home)
    holders = start_holders(data, instance, env, DAY, tmp_path, 4)
    try:
        log = tmp_path / "waiting.log"
        waiting = start_cli(env, DAY, log)
        said: str = wait_for(
            lambda: (
                log.read_text()
                if "waits for a slot of pool app_db (4 of 4 taken)" in log.read_text()
                else None
            ),
            timeout=180,
            what="the slot-wait message",
        )
        line = next(x for x in said.splitlines() if "waits for a slot" in x)
        for holder in holders:  # each holder named: its job, its process, since when
            assert f"sizeagg run pid {holder.pid} on " in line, line
        assert line.count("aggregation_session_job") == 4 and line.count(" UTC") == 4, line
        assert waiting.poll() is None  # it waits, it does not fail
    finally:
        kill(holders)
    output = _finish(waiting, log)
    assert "completed: 3 instances, 3 succeeded, 0 failed" in output, output
    assert sum(line.startswith("sizeagg run: healed run ") for line in output.splitlines()) == 4, output
    assert_healed(data, instance, [h.pid for h in holders])
