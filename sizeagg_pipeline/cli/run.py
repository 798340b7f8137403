"""An execution without the daemon: what `sizeagg run --date D` does, in process.

The four period runs go to the Dagster instance of DAGSTER_HOME, so they show in
the UI afterwards exactly like runs the daemon launched. Then the gate's own
decision (`defs/sessions/gate.py`) says what happens next: the session step runs
here, in process, or the execution's failed session has already been written.

No run launcher or code server watches runs executed in process, so the `Runner`
does what they would: it tags every run with this process (host, pid, start time)
and renews the run's heartbeat while it executes; before the first run, and again
whenever a run waits for an `app_db` slot, it heals runs whose process is gone
(`defs/sessions/dead_runs.py`); and a run that waits for a slot says so on the
console, naming who holds the slots and since when.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, TextIO

import dagster as dg

from ..core import alerts, notify, sessions
from ..core.owner import Owner
from ..core.periods import windows_for_date
from ..core.schema import make_engine
from ..core.sessions import SessionSummary, SyncType
from ..core.settings import alerting, database_url, utc_now
from ..defs.aggregates.assets import APP_DB_POOL
from ..defs.aggregates.jobs import PERIOD_JOBS
from ..defs.alerts.messages import session_alert
from ..defs.sessions.asset import aggregation_session, aggregation_session_job
from ..defs.sessions.dead_runs import HEARTBEAT_INTERVAL, heal
from ..defs.sessions.gate import decide
from ..defs.sessions.vocabulary import (
    HEARTBEAT_TAG,
    ExecutionId,
    Trigger,
    execution_tags,
    owner_of,
    owner_tags,
)

# Runs log to the Dagster instance (the UI shows them); the terminal gets none of it:
# `sizeagg run` prints a line per period and one line per failure (cli/main.py).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
WATCH_INTERVAL = 2.0  # seconds between looks at the run being executed
SLOT_WAIT_REPEAT = 60.0  # seconds between two slot-wait messages of one wait
HEAL_WHILE_WAITING = 10.0  # seconds between two heals while a run waits for a slot


def _stamp() -> str:
    return utc_now().isoformat(timespec="seconds")


def slot_wait(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """What run `run_id` waits for, when one of its steps waits for an `app_db` slot."""
    if not instance.event_log_storage.supports_global_concurrency_limits:
        return None
    info = instance.event_log_storage.get_concurrency_info(APP_DB_POOL)
    if not any(p.run_id == run_id and p.assigned_timestamp is None for p in info.pending_steps):
        return None
    since = {(p.run_id, p.step_key): p.assigned_timestamp for p in info.pending_steps}
    holders = []
    for slot in info.claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        owner = owner_of(run.tags) if run else None
        who = f"sizeagg run {owner}" if owner else "launched by Dagster"
        at = since.get((slot.run_id, slot.step_key))
        when = f" since {at:%Y-%m-%d %H:%M:%S} UTC" if at else ""
        holders.append(f"run {slot.run_id[:8]} ({run.job_name if run else 'deleted'}, {who}){when}")
    return (
        f"run {run_id[:8]} waits for a slot of pool {APP_DB_POOL} "
        f"({len(info.claimed_slots)} of {info.limit} taken): " + "; ".join(holders)
    )


class Runner:
    """Executes runs in this process, each tagged with it and watched while it runs.

    `verbose` puts Dagster's event log on the console; `progress` gets a line per period run.
    """

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        out: TextIO | None = None,
        *,
        verbose: bool = False,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.defs, self.instance, self.out = defs, instance, out or sys.stderr
        self.logs: Mapping[str, Any] = {} if verbose else QUIET
        self.progress = progress
        self.owner = Owner.current()
        self.engine = make_engine(database_url())
        self._current: str | None = None  # the run being executed
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="sizeagg-run-watcher", daemon=True)

    def __enter__(self) -> Runner:
        try:
            self._heal()
        except BaseException:
            self.engine.dispose()
            raise
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watcher.join()
        self.engine.dispose()

    def _say(self, line: str) -> None:
        print(f"sizeagg run: {line}", file=self.out, flush=True)

    def _heal(self) -> None:
        for line in heal(self.instance, self.engine, utc_now()):
            self._say(f"healed {line}")

    def execute(
        self,
        job_name: str,
        tags: Mapping[str, str],
        run_config: Mapping[str, Any],
        partition_key: str | None = None,
    ) -> bool:
        """Execute one run; whether it succeeded."""
        run_id = str(uuid.uuid4())  # known before the run starts, so the watcher can follow it
        self._current = run_id
        try:
            result = self.defs.resolve_job_def(job_name).execute_in_process(
                run_config={**self.logs, **run_config},
                instance=self.instance,
                partition_key=partition_key,
                tags={**tags, **owner_tags(self.owner, _stamp())},
                run_id=run_id,
                raise_on_error=False,
            )
            return result.success
        finally:
            self._current = None

    def _watch(self) -> None:
        """Renew the heartbeat of the run being executed; say (and heal) what it waits for."""
        beat_at, healed_at = time.monotonic(), float("-inf")
        said: tuple[str | None, float] = (None, 0.0)  # the run last spoken of, and when
        trouble = ""  # the last error said, so an outage is said once, not every 2 s
        while not self._stop.wait(WATCH_INTERVAL):
            run_id = self._current
            if run_id is None:
                continue
            try:
                if time.monotonic() - beat_at >= HEARTBEAT_INTERVAL.total_seconds():
                    self.instance.add_run_tags(run_id, {HEARTBEAT_TAG: _stamp()})
                    beat_at = time.monotonic()
                waiting = slot_wait(self.instance, run_id)
                if waiting is None:
                    continue
                if said[0] != run_id or time.monotonic() - said[1] >= SLOT_WAIT_REPEAT:
                    self._say(waiting)
                    said = (run_id, time.monotonic())
                if time.monotonic() - healed_at >= HEAL_WHILE_WAITING:  # a dead holder's slot is freed
                    self._heal()
                    healed_at = time.monotonic()
            except Exception as exc:  # the instance is briefly unreachable: look again next time
                if f"{type(exc).__name__}: {exc}" != trouble:
                    trouble = f"{type(exc).__name__}: {exc}"
                    self._say(f"could not check on run {run_id[:8]}: {trouble}")

    def tick(
        self,
        day: date,
        sync_type: SyncType = SyncType.MANUAL,
        session_config: Mapping[str, Any] | None = None,
    ) -> SessionSummary:
        """Materialize the four partitions containing `day`, then end the execution with its session.

        `session_config` is the session step's config (e.g. `hold_seconds` in tests).
        """
        execution_id = ExecutionId.cli(day, sync_type)
        with self.engine.begin() as conn:  # so that the execution is ended even if this process dies
            sessions.register_execution(conn, execution_id, self.owner.dump())
        tags = execution_tags(execution_id, trigger=Trigger.CLI)
        for period, window in windows_for_date(day).items():
            started = time.monotonic()
            success = self.execute(PERIOD_JOBS[period].name, tags, {}, partition_key=window.key)
            outcome = "succeeded" if success else "FAILED"
            self.progress(f"{day}: {period} {window.key} {outcome} ({time.monotonic() - started:.1f} s)")
        now = utc_now()
        decision = decide(self.instance, self.engine, execution_id, now, now, stale_after=timedelta(0))
        if decision.request is not None:
            ops = {aggregation_session.op.name: {"config": dict(session_config or {})}}
            self.execute(aggregation_session_job.name, decision.request.tags, {"ops": ops})
        with self.engine.connect() as conn:
            # A session step that failed opened its session before it failed.
            session_id = sessions.session_for_execution(conn, execution_id)
            if session_id is None:
                raise RuntimeError(f"execution {execution_id} left no session: {decision.message}")
            return sessions.get_session(conn, session_id)


def run_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    day: date,
    sync_type: SyncType = SyncType.MANUAL,
    session_config: Mapping[str, Any] | None = None,
) -> SessionSummary:
    """One execution in process, as `sizeagg run --date day` runs it."""
    with Runner(defs, instance) as runner:
        return runner.tick(day, sync_type, session_config)


def tell(instance: dg.DagsterInstance, ended: Sequence[SessionSummary]) -> list[str]:
    """Send the alerts of the sessions this process ended failed or cancelled, before it exits.

    A deployment without the daemon is told too; with the daemon, its `alerts` sensor
    finds the same keys and sends nothing twice. Alerts still due from earlier runs
    are delivered here as well. Delivery never changes the exit status.
    """
    settings = alerting()
    engine = make_engine(database_url())
    try:
        with engine.connect() as conn:
            found = [s for summary in ended for s in alerts.ended_badly(conn, utc_now(), summary.session_id)]
        batch = [session_alert(instance, settings, session) for session in found]
        notify.raise_alerts(engine, settings, batch, utc_now())
        told = notify.deliver_now(engine, settings, [a.key for a in batch])
        told += notify.deliver_due(engine, settings, utc_now())
        if not settings.channels:
            return [f"{a.key} recorded (no alert channel configured)" for a in batch]
        return [str(delivery) for delivery in told]
    finally:
        engine.dispose()
