"""The daemon heals what killed `sizeagg run` processes leave behind, with no CLI run at all.

dagster-webserver and dagster-daemon run as two services on the shipped
`dagster.yaml` (pools of 4, run monitoring) and the default sensor interval. Four
`sizeagg run` processes sharing their DAGSTER_HOME are killed with SIGKILL while
they hold every `app_db` slot — the state in which, before, ten minutes of the
daemon changed nothing. The `dead_run_healer` sensor must end it within minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.defs.aggregates.assets import APP_DB_POOL
from sizeagg_pipeline_tests.support.crashes import (
    RUNNING_SESSIONS,
    UNLINKED,
    assert_healed,
    cli_env,
    count,
    kill,
    wedged,
)
from sizeagg_pipeline_tests.support.dagster_processes import running_dagster, wait_for
from sizeagg_pipeline_tests.support.data import three_active_one_inactive
from sizeagg_pipeline_tests.support.execution import DAY

pytestmark = [pytest.mark.slow]

HEALED_WITHIN = 180  # seconds: the sensor ticks every 30 s by default


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = schema.make_engine(url)
    schema.create_missing(engine)
    three_active_one_inactive(engine)
    yield url, engine
    engine.dispose()


def test_the_daemon_heals_killed_cli_runs_within_minutes(
    app: tuple[str, sa.Engine], tmp_path: Path, record_property: Any
) -> None:
    url, engine = app
    home = tmp_path / "dagster_home"
    env = cli_env(url, home, SIZEAGG_DAILY_TICK="off")  # the shipped dagster.yaml, no tick beside the test
    with (
        running_dagster(home, env, services=True) as dagster,
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        with wedged(engine, instance, env, DAY, tmp_path) as wedge:
            pids = [p.pid for p in wedge.procs]
            kill(wedge.procs)
        killed_at = time.monotonic()

        def healed() -> bool:
            info = instance.event_log_storage.get_concurrency_info(APP_DB_POOL)
            return (
                not info.claimed_slots and not count(engine, RUNNING_SESSIONS) and not count(engine, UNLINKED)
            )

        try:
            wait_for(healed, timeout=HEALED_WITHIN, what="the daemon to heal the killed runs", interval=1)
        except TimeoutError:
            print(dagster.log_tail())
            raise
        seconds = time.monotonic() - killed_at
        record_property("healed_seconds", round(seconds, 1))
        print(f"\nthe daemon healed four killed sizeagg runs {seconds:.0f} s after the kill")
        assert_healed(engine, instance, pids)
