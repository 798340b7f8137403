"""`aggregation_session`: the step that writes an execution's session, once, at the end.

It runs only after every period asset of its execution: in a UI backfill because it
is downstream of all eight, in a scheduled or CLI execution because the gate
launches it only when all four period runs succeeded. It still reads the real
outcome of those runs from the Dagster instance before it calls the session a
success. However the step ends, the session ends: `except BaseException` catches
termination (`DagsterExecutionInterruptedError` is not an `Exception`). When the
application database cannot be reached at that moment (a restart, a failover), the
step keeps trying for FINALISE_PATIENCE before it leaves the session to the sensors.

A backfill launches this step as soon as the upstream partitions are materialized,
while their runs may still be evaluating checks; the step waits (up to RUNS_PATIENCE)
for the runs of its execution to finish, so it judges outcomes, not runs in flight.
"""

import datetime as dt
import time
from collections.abc import Callable
from typing import TypeVar

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from ...core import sessions
from ...core.periods import parse_date
from ...core.schema import active_instances_clause, instances
from ...core.sessions import Outcome
from ...dagster_private import Metadata
from ..aggregates.assets import AGGREGATE_ASSETS, APP_DB_POOL, KINDS, OWNERS
from ..aggregates.lineage import session_metadata
from ..aggregates.partitions import CALENDAR
from ..resources import AppDatabase
from .closer import end_session
from .executions import Execution, execution_of_session_run, interruption


class SessionConfig(dg.Config):
    date: str = Field(
        default="",
        description=(
            "Only for a session step launched on its own: the business date whose "
            "daily/weekly/monthly/quarterly partitions it reports on (default: yesterday)."
        ),
    )
    hold_seconds: float = Field(
        default=0,
        ge=0,
        description=(
            "Keep the session open (running) this long before writing its records. "
            "Only for rehearsing Terminate or a killed worker (tests, drills); 0 in normal use."
        ),
    )

    def day(self) -> dt.date:
        return parse_date(self.date, "date") if self.date else CALENDAR.yesterday()


T = TypeVar("T")
RUNS_PATIENCE = dt.timedelta(minutes=10)  # how long the step waits for its execution's runs to end
FINALISE_PATIENCE = dt.timedelta(minutes=2)  # how long finalising waits for the database to be back
BACKOFF_CAP = 15.0  # seconds: the longest wait between two tries


def _unreachable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (worth another try)."""
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    )


class Patience:
    """Retries with growing waits while the database is unreachable, up to one deadline for all tries."""

    def __init__(self, log: dg.DagsterLogManager, budget: dt.timedelta = FINALISE_PATIENCE) -> None:
        self.log, self.budget = log, budget
        self.deadline: float | None = None  # set by the first failure

    def call(self, what: str, fn: Callable[[], T]) -> T:
        wait = 1.0
        while True:
            try:
                return fn()
            except Exception as exc:
                now = time.monotonic()
                self.deadline = self.deadline or now + self.budget.total_seconds()
                if not _unreachable(exc) or now + wait > self.deadline:
                    raise
                self.log.warning(
                    f"{what}: the application database is unreachable ({type(exc).__name__}); "
                    f"trying again in {wait:.0f} s, until {int(self.deadline - now)} s from now"
                )
                _hold(wait)
                wait = min(wait * 2, BACKOFF_CAP)


def settled(context: dg.AssetExecutionContext, day: dt.date) -> Execution:
    """The step's execution once every run of it has finished (or RUNS_PATIENCE is spent)."""
    deadline = time.monotonic() + RUNS_PATIENCE.total_seconds()
    told = ""
    while True:
        execution = execution_of_session_run(context.instance, context.run, day)
        busy = execution.unfinished
        if not busy or time.monotonic() >= deadline:
            return execution
        names = ", ".join(f"{r.period} run {r.run_id[:8]} ({r.status.value})" for r in busy)
        if names != told:
            context.log.info(f"waiting for {names} to finish before judging the execution")
            told = names
        _hold(min(2.0, max(deadline - time.monotonic(), 0)))


def _hold(seconds: float) -> None:
    """Sleep in short steps, so a termination interrupts it at once."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))


@dg.asset(
    deps=list(AGGREGATE_ASSETS.values()),
    description=(
        "One sync_sessions row per aggregation execution and one sync_instance_records "
        "row per active instance: completed with the rows written for it when every "
        "period of the execution succeeded, failed with the failed period named otherwise."
    ),
    group_name="sessions",
    owners=OWNERS,
    kinds=KINDS,
    pool=APP_DB_POOL,
    metadata=session_metadata(),
)
def aggregation_session(
    context: dg.AssetExecutionContext, db: AppDatabase, config: SessionConfig
) -> dg.MaterializeResult:
    run_id = context.run.run_id
    execution = settled(context, config.day())
    with db.engine.begin() as conn:
        session_id = sessions.open_session(
            conn, sync_type=execution.sync_type, details=execution.details(run_id)
        )
    context.log.info(f"session {session_id} opened for execution {execution.id}")
    patience = Patience(context.log)

    def complete() -> None:
        with db.engine.begin() as conn:  # a try that fails rolls back; the next starts afresh
            sessions.complete_session(
                conn, session_id, execution.written(), execution.details(run_id), execution.written_levels()
            )

    try:
        _hold(config.hold_seconds)
        if execution.ok:
            patience.call(f"completing session {session_id}", complete)
        else:
            patience.call(
                f"ending session {session_id}",
                lambda: end_session(db.engine, execution, execution.outcome(), session_id=session_id),
            )
    except BaseException as exc:
        if isinstance(exc, dg.DagsterExecutionInterruptedError):
            # Terminate in the UI, or run monitoring's max runtime: the event log says which.
            outcome = interruption(context.instance, run_id)
        else:
            outcome = Outcome.failed(f"session step failed: {type(exc).__name__}: {exc}")
        try:
            patience.call(
                f"ending session {session_id}",
                lambda: end_session(db.engine, execution, outcome, session_id=session_id),
            )
        except Exception as final:  # the database is still down: the sensors finish the session later
            context.log.error(f"could not finalise session {session_id} ({final}); the janitor will")
        raise
    with db.engine.connect() as conn:
        summary = sessions.get_session(conn, session_id)
        inactive = conn.execute(
            sa.select(sa.func.count()).select_from(instances).where(sa.not_(active_instances_clause()))
        ).scalar_one()
    metadata: Metadata = {
        "session_id": summary.session_id,
        "status": summary.status,
        "execution": execution.id,
        "sync_type": summary.sync_type,
        "total_instances": summary.total_instances,
        "successful_instances": summary.successful_instances,
        "failed_instances": summary.failed_instances,
        "dagster/row_count": summary.total_instances,
        "inactive_instances": inactive,
        # The aggregates' instances_covered counts every instance with raw rows, inactive ones too.
        "why total_instances differs from instances_covered": (
            f"total_instances counts the active instances, one record each; {inactive} inactive or "
            "deleted instance(s) get no record, but their raw rows still feed the aggregates, whose "
            "instances_covered counts every instance with raw data"
        ),
    }
    if summary.status != sessions.SessionStatus.COMPLETED:
        raise dg.Failure(description=execution.reason(), metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


aggregation_session_job = dg.define_asset_job(
    "aggregation_session_job",
    selection=[aggregation_session],
    description="Write the session of an aggregation execution (launched by the gate sensor).",
)
