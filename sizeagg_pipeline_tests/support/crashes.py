"""Real `sizeagg run` processes, killed with SIGKILL while they hold what a crash leaves behind.

Two moments of a crash, each reached for sure, not by timing:

* `start_holding`: the session step holds its session open (its `hold_seconds`
  config), which also holds an `app_db` pool slot — through `Runner`, exactly as
  `sizeagg run` executes (the CLI has no flag for `hold_seconds`);
* `start_cli` under `writes_blocked`: the real `sizeagg run` command, whose period
  step waits on a write lock the test holds while it holds its pool slot.

`wedged` kills three holders and one blocked run at once: the four slots of the
shipped `dagster.yaml` held by dead processes, four runs STARTED, three sessions
`running`, one execution without a session — the state in which every later run used
to wait for ever.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline.defs.aggregates.assets import APP_DB_POOL
from sizeagg_pipeline.defs.sessions.vocabulary import EXECUTION_TAG, owner_of
from sizeagg_pipeline_tests.support.dagster_processes import wait_for
from sizeagg_pipeline_tests.support.execution import ACTIVE
from sizeagg_pipeline_tests.support.paths import BIN, ROOT
from sizeagg_pipeline_tests.support.session_rows import assert_ended, session_ids_of

HOLDING = """
import sys
from datetime import date
import dagster as dg
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.cli.run import Runner
with dg.DagsterInstance.get() as instance, Runner(defs, instance) as runner:
    day, hold = date.fromisoformat(sys.argv[1]), float(sys.argv[2])
    summary = runner.tick(day, session_config={"hold_seconds": hold})
print(summary)
"""


def _pid(tags: Mapping[str, str]) -> str:
    """The pid of the `sizeagg run` process that executes a run, as text ("" for none)."""
    owner = owner_of(tags)
    return str(owner.pid) if owner else ""


def cli_env(app_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of `sizeagg run`: this application database, `home` with the shipped dagster.yaml."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home), DATABASE_URL_VAR: app_url, **extra}


def _start(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def start_holding(
    env: dict[str, str], day: date, log: Path, hold_seconds: float = 600
) -> subprocess.Popen[str]:
    """An execution whose session step holds its session (and a pool slot) for `hold_seconds`."""
    return _start([sys.executable, "-c", HOLDING, day.isoformat(), str(hold_seconds)], env, log)


def start_cli(env: dict[str, str], day: date, log: Path) -> subprocess.Popen[str]:
    """The real `sizeagg run --date day`."""
    return _start([str(BIN / "sizeagg"), "run", "--date", day.isoformat()], env, log)


def kill(procs: Sequence[subprocess.Popen[str]]) -> None:
    """SIGKILL each process's whole group (a lost host: no handler runs), then reap it."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=30)


@contextlib.contextmanager
def writes_blocked(engine: sa.Engine) -> Iterator[None]:
    """Hold a lock that makes every aggregate or session write wait (reads go on)."""
    if engine.dialect.name == "sqlite":
        path = sa.make_url(str(engine.url)).database
        assert path
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # the one write lock of the file
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    with engine.connect() as conn, conn.begin() as transaction:
        tables = ", ".join(
            t.name
            for t in (
                schema.database_size_aggregations,
                schema.instance_size_aggregations,
                schema.sync_sessions,
                schema.sync_instance_records,
            )
        )
        conn.exec_driver_sql(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        yield
        transaction.rollback()


def claimed_by(instance: dg.DagsterInstance, pids: Sequence[int]) -> int:
    """`app_db` slots held by runs of these processes."""
    wanted = {str(pid) for pid in pids}
    held = 0
    for slot in instance.event_log_storage.get_concurrency_info(APP_DB_POOL).claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        held += run is not None and _pid(run.tags) in wanted
    return held


def count(engine: sa.Engine, query: sa.Select) -> int:
    with engine.connect() as conn:
        return len(conn.execute(query).all())


RUNNING_SESSIONS = sa.select(schema.sync_sessions.c.session_id).where(
    schema.sync_sessions.c.status == "running"
)
UNLINKED = sa.select(schema.sizeagg_executions.c.execution_id).where(
    schema.sizeagg_executions.c.session_id.is_(None)
)


@dataclass
class Wedge:
    """Four `sizeagg run` processes, each holding an `app_db` slot (alive until `kill`)."""

    holding: list[subprocess.Popen[str]]  # the session step holds its session
    blocked: list[subprocess.Popen[str]]  # a step waits on the test's write lock
    logs: list[Path]

    @property
    def procs(self) -> list[subprocess.Popen[str]]:
        return [*self.holding, *self.blocked]

    def output(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in self.logs)


def start_holders(
    engine: sa.Engine, instance: dg.DagsterInstance, env: dict[str, str], day: date, logs: Path, count_: int
) -> list[subprocess.Popen[str]]:
    """`count_` executions whose session steps hold their sessions and slots, started one at a time.

    One at a time because Dagster's SQLite event-log storage claims a slot with
    `SELECT … FOR UPDATE SKIP LOCKED`, a no-op on SQLite: two processes claiming at
    the same instant can take the same slot row (docs/operations.md, "Pool slots").
    """
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(count_):
            procs.append(start_holding(env, day, logs / f"holding-{i}.log"))
            wait_for(
                lambda: (
                    count(engine, RUNNING_SESSIONS) == len(procs)
                    and claimed_by(instance, [p.pid for p in procs]) == len(procs)
                ),
                timeout=240,
                what=f"{len(procs)} session step(s) holding their sessions and slots",
            )
    except TimeoutError as exc:
        kill(procs)
        raise TimeoutError(f"{exc}; runs by pid: {runs_by_process(instance)}") from None
    except BaseException:
        kill(procs)
        raise
    return procs


def runs_by_process(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """pid → its runs' jobs and statuses (what a timeout reports)."""
    found: dict[str, list[str]] = {}
    for run in instance.get_runs():
        found.setdefault(_pid(run.tags) or "-", []).append(f"{run.job_name} {run.status.value}")
    return found


@contextlib.contextmanager
def wedged(
    engine: sa.Engine, instance: dg.DagsterInstance, env: dict[str, str], day: date, logs: Path
) -> Iterator[Wedge]:
    """Three holding executions and one `sizeagg run` blocked in a step: every slot held.

    One blocked run, not two: two started together claim their slots in the same instant
    (see start_holders), and on SQLite the lock cannot be taken before the second
    registers its execution. The processes are killed at the latest on exit, before the
    write lock is released.
    """
    holding = start_holders(engine, instance, env, day, logs, 3)
    wedge = Wedge(holding, [], [logs / f"holding-{i}.log" for i in range(3)])
    try:
        before = count(engine, UNLINKED)
        log = logs / "blocked.log"
        wedge.blocked.append(start_cli(env, day, log))
        wedge.logs.append(log)
        # it registers its execution, then runs into the lock while it holds a slot
        wait_for(lambda: count(engine, UNLINKED) == before + 1, timeout=120, what="a registered execution")
        with writes_blocked(engine):
            wait_for(
                lambda: claimed_by(instance, [p.pid for p in wedge.procs]) == 4,
                timeout=180,
                what="four app_db slots held by the four processes",
            )
            try:
                yield wedge
            finally:
                kill(wedge.procs)  # before the lock goes: a blocked step must not go on
    finally:
        kill(wedge.procs)


def assert_healed(data: sa.Engine, instance: dg.DagsterInstance, pids: list[int]) -> None:
    """The killed processes' runs failed, their slots are free, and each execution has one failed session."""
    runs = [r for r in instance.get_runs() if _pid(r.tags) in {str(p) for p in pids}]
    assert {r.status for r in runs if r.is_finished} == {
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
    }
    assert all(r.is_finished for r in runs), [(r.job_name, r.status) for r in runs]
    info = instance.event_log_storage.get_concurrency_info(APP_DB_POOL)
    assert info.claimed_slots == [] and info.pending_steps == []
    executions = {r.tags[EXECUTION_TAG] for r in runs}
    assert len(executions) == len(pids)
    for execution_id in executions:
        [session_id] = session_ids_of(data, execution_id)
        records = assert_ended(data, session_id, "failed", total=ACTIVE)
        message = records[0]["error_message"]
        assert "is gone" in message and "marked failed by the dead-run check" in message, message
    for run in runs:
        if run.status == dg.DagsterRunStatus.FAILURE:
            [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert f"pid {_pid(run.tags)} on " in failure.message, failure.message
