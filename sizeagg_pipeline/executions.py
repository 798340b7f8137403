"""Aggregation executions: the Dagster runs that together bring all four periods up to date.

One Dagster run cannot hold assets of different partitions definitions, so an
execution is up to four period runs plus one session run, linked by a tag:
`sizeagg/execution` for ticks, late-data re-runs and CLI runs, `dagster/backfill`
for a backfill. This module reads the real outcome of those runs from the Dagster
instance, so the session step and the sensors judge an execution by what actually
happened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.execution.backfill import PartitionBackfill

from .core import sessions
from .core.aggregation import LEVELS
from .core.periods import PERIODS, Period, window_containing, windows_for_date

EXECUTION_TAG = "sizeagg/execution"
SYNC_TYPE_TAG = "sizeagg/sync_type"
DATE_TAG = "sizeagg/date"
TRIGGER_TAG = "sizeagg/trigger"  # tick | late_data | cli
PERIODS_TAG = "sizeagg/periods"  # the periods the execution materializes, comma-separated
RUNS_TAG = "sizeagg/runs"  # how many period runs the execution launches
BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

SESSION_ASSET = "aggregation_session"
SESSION_JOB = "aggregation_session_job"
PERIOD_JOB_NAMES = {f"{p}_aggregation_job": p for p in PERIODS}
_ASSET_PERIODS = {level.asset_name(p): p for level in LEVELS for p in PERIODS}
_ASSET_PERIODS.update(PERIOD_JOB_NAMES)

FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def execution_tags(
    execution_id: str,
    sync_type: str,
    *,
    trigger: str,
    periods: Sequence[Period] = PERIODS,
    runs: int | None = None,
    day: date | None = None,
) -> dict[str, str]:
    """Tags every run of one execution carries (filter on `sizeagg/execution` in the UI)."""
    tags = {
        EXECUTION_TAG: execution_id,
        SYNC_TYPE_TAG: sync_type,
        TRIGGER_TAG: trigger,
        PERIODS_TAG: ",".join(p.value for p in periods),
        RUNS_TAG: str(len(periods) if runs is None else runs),
    }
    if day is not None:
        tags[DATE_TAG] = day.isoformat()
    return tags


@dataclass(frozen=True)
class PeriodRun:
    """One run of an execution that materialized period assets."""

    run_id: str
    period: Period
    first_key: str
    last_key: str
    status: dg.DagsterRunStatus
    error: str | None = None
    levels: tuple[str, ...] = ("database", "instance")  # the levels the run materialized

    @property
    def partitions(self) -> str:
        return self.first_key if self.first_key == self.last_key else f"{self.first_key}...{self.last_key}"

    @property
    def succeeded(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def failure_text(self) -> str:
        verb = "was cancelled" if self.status == dg.DagsterRunStatus.CANCELED else "failed"
        text = f"{self.period} partition {self.partitions} (run {self.run_id[:8]}) {verb}"
        return f"{text}: {self.error}" if self.error else text


@dataclass(frozen=True)
class Execution:
    id: str
    sync_type: str
    runs: Sequence[PeriodRun]
    missing: Sequence[str] = field(default_factory=tuple)  # problems found without a run

    @property
    def failures(self) -> list[PeriodRun]:
        return [r for r in self.runs if not r.succeeded]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing

    def reason(self) -> str:
        parts = [r.failure_text() for r in self.failures] + list(self.missing)
        return "aggregation failed: " + "; ".join(parts)

    def plan(self) -> dict[Period, list[tuple[date, date]]]:
        plan: dict[Period, list[tuple[date, date]]] = {}
        for run in self.runs:
            plan.setdefault(run.period, []).append(
                (date.fromisoformat(run.first_key), date.fromisoformat(run.last_key))
            )
        return plan

    def levels(self) -> dict[Period, set[str]]:
        """The levels each period's runs materialized (both, unless a run selected one)."""
        levels: dict[Period, set[str]] = {}
        for run in self.runs:
            levels.setdefault(run.period, set()).update(run.levels)
        return levels

    def details(self, session_run_id: str | None = None) -> dict[str, Any]:
        """What every record's sync_details says about where the session came from."""
        return {
            "execution": self.id,
            "dagster_run_ids": sorted({r.run_id for r in self.runs}),
            "session_run_id": session_run_id,
        }


def _run_levels(run: dg.DagsterRun) -> tuple[str, ...]:
    names = {key.to_user_string() for key in run.asset_selection or ()}
    selected = tuple(level.name for level in LEVELS if any(level.asset_name(p) in names for p in PERIODS))
    return selected or tuple(level.name for level in LEVELS)


def _run_period(run: dg.DagsterRun) -> Period | None:
    names = {key.to_user_string() for key in run.asset_selection or ()}
    periods = {_ASSET_PERIODS[n] for n in names if n in _ASSET_PERIODS}
    if not periods and run.job_name in _ASSET_PERIODS:
        periods = {_ASSET_PERIODS[run.job_name]}
    return periods.pop() if len(periods) == 1 else None


def run_error(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """What a person should read about a failed run.

    The first step error (unwrapped from Dagster's wrapper), else a crash of the
    run's process reported by the code server (a killed worker), else the
    run-failure message.
    """
    if run.status == dg.DagsterRunStatus.CANCELED:
        return "cancelled by user"
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        while error is not None and error.cause is not None:  # Dagster wraps the user's error
            error = error.cause
        if error is not None:
            text = error.message.strip()
            head, colon, rest = text.partition(": ")
            if colon and error.cls_name and head.rsplit(".", 1)[-1] == error.cls_name:
                text = rest  # "pkg.module.Cls: msg" → "msg"
            return f"{error.cls_name}: {text}" if error.cls_name else text
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        message = record.message or ""
        if "Run execution process for" in message and ("signal" in message or "exited" in message):
            return message.removeprefix("[DagsterApiServer] ").split(". ")[0] + "."
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        if record.message:
            return record.message
    return None


def interruption(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str]:
    """(session status, reason) for a terminated run: run monitoring's timeout or a person."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_CANCELING):
        if record.message and "maximum runtime" in record.message:
            return "failed", f"terminated by run monitoring: {record.message}"
    return "cancelled", "cancelled by user"


def period_runs(instance: dg.DagsterInstance, tags: Mapping[str, str]) -> list[PeriodRun]:
    """The period runs carrying `tags`, with their real status and error."""
    result = []
    for run in instance.get_runs(filters=dg.RunsFilter(tags=dict(tags))):
        period = _run_period(run)
        if period is None:
            continue
        first = run.tags.get(RANGE_START_TAG) or run.tags.get(PARTITION_TAG)
        last = run.tags.get(RANGE_END_TAG) or run.tags.get(PARTITION_TAG)
        if not first or not last:
            continue
        failed = run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
        result.append(
            PeriodRun(
                run_id=run.run_id,
                period=period,
                first_key=first,
                last_key=last,
                status=run.status,
                error=run_error(instance, run) if failed else None,
                levels=_run_levels(run),
            )
        )
    return sorted(result, key=lambda r: (PERIODS.index(r.period), r.first_key))


def sync_type_of(tags: Mapping[str, str]) -> str:
    if SYNC_TYPE_TAG in tags:
        return tags[SYNC_TYPE_TAG]
    automated = any(k in tags for k in ("dagster/schedule_name", "dagster/sensor_name"))
    return sessions.SCHEDULED if automated else sessions.MANUAL


def expected_periods(tags: Mapping[str, str]) -> tuple[Period, ...]:
    """The periods an execution materializes: all four unless its tags say fewer."""
    if tags.get(PERIODS_TAG):
        return tuple(Period(p) for p in tags[PERIODS_TAG].split(","))
    return PERIODS


def _materialized(instance: dg.DagsterInstance, asset: str, partition: str) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    )
    return bool(records.records)


def standalone(instance: dg.DagsterInstance, run_id: str, day: date, sync_type: str) -> Execution:
    """A session step launched on its own: judge the four partitions containing `day`."""
    missing = []
    runs = []
    for period, window in windows_for_date(day).items():
        absent = [
            level.asset_name(period)
            for level in LEVELS
            if not _materialized(instance, level.asset_name(period), window.key)
        ]
        if absent:
            missing.append(f"{period} partition {window.key} was never materialized ({', '.join(absent)})")
        else:
            runs.append(PeriodRun(run_id, period, window.key, window.key, dg.DagsterRunStatus.SUCCESS))
    return Execution(id=f"run:{run_id}", sync_type=sync_type, runs=runs, missing=missing)


def execution_id_of(tags: Mapping[str, str], run_id: str) -> str:
    """The execution a session run belongs to, from its tags alone."""
    if EXECUTION_TAG in tags:
        return tags[EXECUTION_TAG]
    if BACKFILL_TAG in tags:
        return f"backfill:{tags[BACKFILL_TAG]}"
    return f"run:{run_id}"


def linked(
    instance: dg.DagsterInstance,
    execution_id: str,
    link: Mapping[str, str],
    sync_type: str,
    periods: Sequence[Period] = PERIODS,
    exclude_run_id: str | None = None,
) -> Execution:
    """An execution judged from the period runs that carry its link tag."""
    runs = [r for r in period_runs(instance, link) if r.run_id != exclude_run_id]
    seen = {r.period for r in runs}
    missing = [f"no {p} run in this execution" for p in periods if p not in seen]
    return Execution(id=execution_id, sync_type=sync_type, runs=runs, missing=missing)


def selected_periods(asset_keys: Sequence[dg.AssetKey] | None) -> tuple[Period, ...]:
    """The periods whose assets a backfill selected."""
    names = {key.to_user_string() for key in asset_keys or ()}
    return tuple(p for p in PERIODS if any(level.asset_name(p) in names for level in LEVELS))


def backfill_execution(instance: dg.DagsterInstance, backfill: PartitionBackfill) -> Execution:
    """A backfill as one execution: the periods it selected, judged from its runs."""
    return linked(
        instance,
        f"backfill:{backfill.backfill_id}",
        {BACKFILL_TAG: backfill.backfill_id},
        sync_type_of(backfill.tags),
        selected_periods(backfill.asset_selection),
    )


def describe(instance: dg.DagsterInstance, run: dg.DagsterRun, default_day: date) -> Execution:
    """The execution a session run belongs to, judged from the runs that share its tag."""
    tags = run.tags
    sync_type = sync_type_of(tags)
    execution_id = execution_id_of(tags, run.run_id)
    if EXECUTION_TAG in tags:
        link = {EXECUTION_TAG: tags[EXECUTION_TAG]}
        periods = expected_periods(tags)
    elif BACKFILL_TAG in tags:
        link = {BACKFILL_TAG: tags[BACKFILL_TAG]}
        backfill = instance.get_backfill(tags[BACKFILL_TAG])
        periods = selected_periods(backfill.asset_selection) if backfill else PERIODS
    if EXECUTION_TAG not in tags and (BACKFILL_TAG not in tags or not periods):
        # Launched on its own (or a backfill of the session step alone).
        return standalone(instance, run.run_id, default_day, sync_type)
    return linked(instance, execution_id, link, sync_type, periods, exclude_run_id=run.run_id)


def write_failed_session(
    engine: sa.Engine, execution: Execution, *, reason: str | None = None, status: str = "failed"
) -> str:
    """The one session of an execution whose session step never wrote one (idempotent).

    Returns the id of the session written now, or of the one that existed.
    """
    with engine.begin() as conn:
        sessions.lock_execution(conn, execution.id)
        existing = sessions.session_for_execution(conn, execution.id)
        if existing:
            return existing
        return sessions.record_failed_execution(
            conn,
            sync_type=execution.sync_type,
            reason=reason or execution.reason(),
            details=execution.details(),
            status=status,
        )


def tick_partitions(day: date) -> dict[Period, str]:
    """Partition keys a daily tick for business date `day` materializes."""
    return {period: window_containing(period, day).key for period in PERIODS}
