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

# sizeagg's run tags: the two a person filters runs on. Everything else about a run
# is derived (a run's period from its job, the sync type from the trigger and the
# execution id), so a row of the Runs page carries few pills.
EXECUTION_TAG = "sizeagg/execution"  # the execution a run belongs to (filter on it in the UI)
TRIGGER_TAG = "sizeagg/trigger"  # what started it: tick, late_data, cli
# Only on executions that launch fewer or other runs than the four of a tick (late
# data): the gate needs them to know when the execution is complete.
PERIODS_TAG = "sizeagg/periods"  # the periods the execution materializes, comma-separated
RUNS_TAG = "sizeagg/runs"  # how many period runs the execution launches
# Only on the runs `sizeagg run` executes in process: the process that runs them
# (core/owner.py: host, pid, start time, pid namespace) and its last sign of life (ISO
# UTC), renewed while it runs, so that a dead process's runs can be healed.
OWNER_TAG = "sizeagg/owner"
HEARTBEAT_TAG = "sizeagg/heartbeat"
# Dagster's own run tags that sizeagg reads
BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
AUTOMATION_TAGS = ("dagster/schedule_name", "dagster/sensor_name")


class Trigger(StrEnum):
    """What started an execution whose runs carry `sizeagg/execution`."""

    TICK = "tick"  # the daily tick schedules
    LATE_DATA = "late_data"  # the raw-data observation sensor
    CLI = "cli"  # `sizeagg run`, which writes its own session


# Executions whose session step the gate sensor launches (the CLI runs its own).
GATED_TRIGGERS = frozenset({Trigger.TICK.value, Trigger.LATE_DATA.value})


class ExecutionId:
    """The id of each kind of execution: what `sync_details["execution"]` says."""

    @staticmethod
    def tick_prefix() -> str:
        return "scheduled:"

    @staticmethod
    def tick(day: date) -> str:
        return f"{ExecutionId.tick_prefix()}{day.isoformat()}"

    @staticmethod
    def cli(day: date, sync_type: SyncType) -> str:
        kind = ExecutionId.tick_prefix() if sync_type is SyncType.SCHEDULED else "manual:"
        return f"{kind}{day.isoformat()}:{uuid.uuid4().hex[:8]}"

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
    execution_id: str, *, trigger: Trigger, periods: Sequence[Period] = PERIODS, runs: int | None = None
) -> dict[str, str]:
    """Tags every run of one execution carries: its id and trigger, and what differs from a tick."""
    tags = {EXECUTION_TAG: execution_id, TRIGGER_TAG: trigger.value}
    if tuple(periods) != PERIODS:
        tags[PERIODS_TAG] = ",".join(p.value for p in periods)
    if (len(periods) if runs is None else runs) != len(PERIODS):
        tags[RUNS_TAG] = str(len(periods) if runs is None else runs)
    return tags


def execution_id_of(tags: Mapping[str, str]) -> str | None:
    """The execution a period run belongs to: its tag, or its UI backfill; None for a lone run."""
    if EXECUTION_TAG in tags:
        return tags[EXECUTION_TAG]
    if BACKFILL_TAG in tags:
        return ExecutionId.backfill(tags[BACKFILL_TAG])
    return None


def sync_type_of(tags: Mapping[str, str]) -> SyncType:
    """Who started a run's execution: the tick and late data are scheduled; `sizeagg run` says
    so in its execution id; otherwise a schedule's or sensor's run is scheduled, a person's manual."""
    trigger = tags.get(TRIGGER_TAG)
    if trigger in (Trigger.TICK.value, Trigger.LATE_DATA.value):
        return SyncType.SCHEDULED
    if trigger == Trigger.CLI.value:
        scheduled = tags.get(EXECUTION_TAG, "").startswith(ExecutionId.tick_prefix())
        return SyncType.SCHEDULED if scheduled else SyncType.MANUAL
    return SyncType.SCHEDULED if any(k in tags for k in AUTOMATION_TAGS) else SyncType.MANUAL


def range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags of a run over a partition range (a single partition is a run's partition_key)."""
    return {RANGE_START_TAG: first_key, RANGE_END_TAG: last_key}


def owner_tags(owner: Owner, heartbeat: str) -> dict[str, str]:
    """Tags of a run executed in process by `owner`, alive at `heartbeat`."""
    return {OWNER_TAG: owner.dump(), HEARTBEAT_TAG: heartbeat}


def owner_of(tags: Mapping[str, str]) -> Owner | None:
    """The process that executes a run in process; None for a run Dagster launched."""
    return Owner.load(tags[OWNER_TAG]) if OWNER_TAG in tags else None
