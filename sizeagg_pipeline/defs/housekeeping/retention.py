"""Dagster's own history does not grow without bound: old runs are deleted every morning.

Five runs a day, plus backfills, each with its event log, would otherwise pile up in
the Dagster instance for as long as the deployment lives. Sensor and schedule ticks
have Dagster's own `retention` settings (dagster.yaml); runs have none, so this job
deletes finished runs older than SIZEAGG_RUN_RETENTION_DAYS (`instance.delete_run`:
the run and its events). It keeps two kinds of old run:

* a run a running session names (its period runs or its session step): the janitor
  and the failure sensors still judge that session by it;
* a run that holds the latest materialization of some asset partition: its events
  are how Dagster knows the partition was materialized at all — the UI's partition
  status, the late-data sensor (which re-materializes only partitions materialized
  before) and a standalone session step all read them. A newer materialization of
  the same partition releases it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import sessions
from ...core.settings import operations, utc_now
from .. import automation
from ..aggregates.partitions import CALENDAR
from ..resources import AppDatabase

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
RUNS_PER_PRUNE = 2_000  # deletions per job run: a first run on a long history catches up over days
PAGE = 500


def latest_materialization_runs(instance: dg.DagsterInstance) -> set[str]:
    """Every run that holds the latest materialization of an asset, or of one of its partitions."""
    runs: set[str] = set()
    for key in instance.get_asset_keys():
        latest = instance.get_latest_materialization_event(key)
        if latest is not None:
            runs.add(latest.run_id)
        storage_ids = sorted(
            set(
                instance.get_latest_storage_id_by_partition(
                    key, dg.DagsterEventType.ASSET_MATERIALIZATION
                ).values()
            )
        )
        for start in range(0, len(storage_ids), PAGE):
            chunk = storage_ids[start : start + PAGE]
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)
            ).records
            runs.update(record.run_id for record in records)
    return runs


@dataclass(frozen=True)
class Pruned:
    deleted: int
    kept_latest: int  # older than the cutoff, but holding a partition's latest materialization
    kept_in_use: int  # older than the cutoff, but named by a running session

    def __str__(self) -> str:
        return (
            f"deleted {self.deleted} runs; kept {self.kept_latest} that hold a partition's latest "
            f"materialization and {self.kept_in_use} that a running session names"
        )


def prune(
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    now: datetime,
    max_age: timedelta,
    limit: int = RUNS_PER_PRUNE,
) -> Pruned:
    """Delete finished runs created before `now - max_age`, oldest first, except the ones kept."""
    with engine.connect() as conn:
        in_use = sessions.runs_of_running_sessions(conn)
    latest = latest_materialization_runs(instance)
    old = dg.RunsFilter(statuses=FINISHED, created_before=now - max_age)
    deleted = kept_latest = kept_in_use = 0
    cursor: str | None = None  # the last run kept: deleted runs cannot be a cursor
    while deleted < limit:
        page = instance.get_run_records(filters=old, limit=PAGE, cursor=cursor, ascending=True)
        if not page:
            break
        for record in page:
            run_id = record.dagster_run.run_id
            if run_id in in_use:
                kept_in_use += 1
                cursor = run_id
            elif run_id in latest:
                kept_latest += 1
                cursor = run_id
            elif deleted < limit:
                instance.delete_run(run_id)
                deleted += 1
    return Pruned(deleted, kept_latest, kept_in_use)


@dg.op(
    description=(
        "Deletes finished Dagster runs (and their event logs) older than "
        "SIZEAGG_RUN_RETENTION_DAYS, except runs a running session names and runs that "
        "hold the latest materialization of an asset partition."
    )
)
def delete_old_runs(context: dg.OpExecutionContext, db: AppDatabase) -> None:
    days = operations().run_retention_days
    pruned = prune(context.instance, db.engine, utc_now(), timedelta(days=days))
    context.log.info(f"runs older than {days} days: {pruned}")


@dg.job(description="Keeps Dagster's run history bounded: deletes old runs nothing needs any more.")
def dagster_run_retention_job() -> None:
    delete_old_runs()


@automation.schedule(
    "dagster_run_retention",
    "15 5 * * *",
    CALENDAR.timezone,
    dagster_run_retention_job,
    "Every morning after the tick (05:15 business time): deletes Dagster runs older than "
    "SIZEAGG_RUN_RETENTION_DAYS (default 90) that no running session names and that hold "
    "no partition's latest materialization.",
)
def dagster_run_retention(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"retention:{context.scheduled_execution_time:%Y-%m-%d}")
