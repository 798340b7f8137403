"""The words every part of an execution uses: run tags, triggers, execution ids.

One Dagster run cannot hold assets of different partitions definitions, so an
aggregation execution is up to four period runs plus one session run, linked by
the `sizeagg/execution` tag (a UI backfill is linked by Dagster's `dagster/backfill`
instead). Everything that writes or reads those tags uses the names below.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from enum import StrEnum

from ...core.owner import Owner
from ...core.periods import PERIODS, Period
from ...core.sessions import SyncType

# sizeagg's run tags
EXECUTION_TAG = "sizeagg/execution"  # the execution a run belongs to (filter on it in the UI)
SYNC_TYPE_TAG = "sizeagg/sync_type"
TRIGGER_TAG = "sizeagg/trigger"
DATE_TAG = "sizeagg/date"  # the business date a tick or CLI execution is for
PERIODS_TAG = "sizeagg/periods"  # the periods the execution materializes, comma-separated
RUNS_TAG = "sizeagg/runs"  # how many period runs the execution launches
PERIOD_TAG = "sizeagg/period"  # on every run of a period job: its period
# On every run `sizeagg run` executes in process: the process that runs it (core/owner.py)
HOST_TAG = "sizeagg/host"
PID_TAG = "sizeagg/pid"
PROCESS_START_TAG = "sizeagg/process_start"
PID_NAMESPACE_TAG = "sizeagg/pid_namespace"
HEARTBEAT_TAG = "sizeagg/heartbeat"  # the process's last sign of life (ISO UTC), renewed while it runs
# Dagster's own run tags that sizeagg reads
BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
AUTOMATION_TAGS = ("dagster/schedule_name", "dagster/sensor_name")


class Trigger(StrEnum):
    """What started an execution whose runs carry `sizeagg/execution`."""

    TICK = "tick"  # the daily tick sensor
    LATE_DATA = "late_data"  # the raw-data observation sensor
    CLI = "cli"  # `sizeagg run`, which writes its own session


# Executions whose session step the gate sensor launches (the CLI runs its own).
GATED_TRIGGERS = frozenset({Trigger.TICK.value, Trigger.LATE_DATA.value})


class ExecutionId:
    """The id of each kind of execution: what `sync_details["execution"]` says."""

    @staticmethod
    def tick(day: date) -> str:
        return f"scheduled:{day.isoformat()}"

    @staticmethod
    def cli(day: date, sync_type: SyncType) -> str:
        kind = "scheduled" if sync_type is SyncType.SCHEDULED else "manual"
        return f"{kind}:{day.isoformat()}:{uuid.uuid4().hex[:8]}"

    @staticmethod
    def late_data(generation: int, digest: str) -> str:
        return f"late:{generation}:{digest}"

    @staticmethod
    def backfill(backfill_id: str) -> str:
        return f"backfill:{backfill_id}"

    @staticmethod
    def single_run(run_id: str) -> str:
        """A session step launched on its own."""
        return f"run:{run_id}"

    @staticmethod
    def sync_type(execution_id: str) -> SyncType:
        """The sync type an id stands for (for an execution that left no run to ask)."""
        scheduled = execution_id.startswith(("scheduled:", "late:"))
        return SyncType.SCHEDULED if scheduled else SyncType.MANUAL


def execution_tags(
    execution_id: str,
    sync_type: SyncType,
    *,
    trigger: Trigger,
    periods: Sequence[Period] = PERIODS,
    runs: int | None = None,
    day: date | None = None,
) -> dict[str, str]:
    """Tags every run of one execution carries."""
    tags = {
        EXECUTION_TAG: execution_id,
        SYNC_TYPE_TAG: sync_type.value,
        TRIGGER_TAG: trigger.value,
        PERIODS_TAG: ",".join(p.value for p in periods),
        RUNS_TAG: str(len(periods) if runs is None else runs),
    }
    if day is not None:
        tags[DATE_TAG] = day.isoformat()
    return tags


def range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags of a run over a partition range (a single partition is a run's partition_key)."""
    return {RANGE_START_TAG: first_key, RANGE_END_TAG: last_key}


def owner_tags(owner: Owner, heartbeat: str) -> dict[str, str]:
    """Tags of a run executed in process by `owner`, alive at `heartbeat`."""
    return {
        HOST_TAG: owner.host,
        PID_TAG: str(owner.pid),
        PROCESS_START_TAG: owner.started,
        PID_NAMESPACE_TAG: owner.namespace,
        HEARTBEAT_TAG: heartbeat,
    }


def owner_of(tags: Mapping[str, str]) -> Owner | None:
    """The process that executes a run in process; None for a run Dagster launched."""
    if HOST_TAG not in tags or PID_TAG not in tags:
        return None
    return Owner(
        tags[HOST_TAG], int(tags[PID_TAG]), tags.get(PROCESS_START_TAG, ""), tags.get(PID_NAMESPACE_TAG, "")
    )
