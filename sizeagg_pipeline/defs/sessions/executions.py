"""What an aggregation execution really did, read from the Dagster instance.

The session step and every sensor judge an execution by the real outcome of its
runs (status, first error), never by what was asked for. An execution is found by
its link tag (`vocabulary.py`); a run's period comes from its period job
or from the aggregate assets it selected (backfill runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg

from ...core.levels import LEVELS, Level
from ...core.periods import PERIODS, Period, key_range, windows_for_date
from ...core.sessions import EXECUTION_KEY, RUN_IDS_KEY, SESSION_RUN_KEY, Outcome, SyncType
from ...dagster_private import PartitionBackfill
from ..aggregates.assets import AGGREGATE_KEYS
from ..aggregates.jobs import PERIOD_JOBS
from ..aggregates.partitions import materialized
from .vocabulary import (
    BACKFILL_TAG,
    EXECUTION_TAG,
    PARTITION_TAG,
    PERIODS_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    ExecutionId,
    sync_type_of,
)

FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
ENDED_BADLY = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class PeriodRun:
    """One run of an execution that materialized period assets."""

    run_id: str
    period: Period
    first_key: str
    last_key: str
    status: dg.DagsterRunStatus
    error: str | None = None
    levels: tuple[Level, ...] = LEVELS  # the levels the run materialized

    @property
    def partitions(self) -> str:
        return key_range(self.first_key, self.last_key)

    @property
    def succeeded(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS

    def failure_text(self) -> str:
        if self.status == dg.DagsterRunStatus.CANCELED:
            verb = "was cancelled"
        elif self.status in FINISHED:
            verb = "failed"
        else:
            verb = f"had not finished ({self.status.value})"
        text = f"{self.period} partition {self.partitions} (run {self.run_id[:8]}) {verb}"
        return f"{text}: {self.error}" if self.error else text


@dataclass(frozen=True)
class Execution:
    id: str
    sync_type: SyncType
    runs: Sequence[PeriodRun]
    missing: Sequence[str] = field(default_factory=tuple)  # problems found without a run

    @property
    def failures(self) -> list[PeriodRun]:
        return [r for r in self.runs if not r.succeeded]

    @property
    def unfinished(self) -> list[PeriodRun]:
        return [r for r in self.runs if r.status not in FINISHED]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing

    def reason(self) -> str:
        parts = [r.failure_text() for r in self.failures] + list(self.missing)
        return "aggregation failed: " + "; ".join(parts)

    def outcome(self) -> Outcome:
        """The session outcome of an execution whose periods did not all succeed."""
        return Outcome.failed(self.reason())

    def written(self) -> dict[Period, list[tuple[date, date]]]:
        """Per period, the (first, last) window start of each run: the slices it wrote."""
        plan: dict[Period, list[tuple[date, date]]] = {}
        for run in self.runs:
            plan.setdefault(run.period, []).append(
                (date.fromisoformat(run.first_key), date.fromisoformat(run.last_key))
            )
        return plan

    def written_levels(self) -> dict[Period, set[str]]:
        """The levels each period's runs materialized (both, unless a run selected one)."""
        levels: dict[Period, set[str]] = {}
        for run in self.runs:
            levels.setdefault(run.period, set()).update(level.name for level in run.levels)
        return levels

    def details(self, session_run_id: str | None = None) -> dict[str, Any]:
        """What every record's sync_details says about where the session came from."""
        return {
            EXECUTION_KEY: self.id,
            RUN_IDS_KEY: sorted({r.run_id for r in self.runs}),
            SESSION_RUN_KEY: session_run_id,
        }


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


def interruption(instance: dg.DagsterInstance, run_id: str) -> Outcome:
    """A terminated run: run monitoring's timeout (failed) or a person (cancelled)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_CANCELING):
        if record.message and "maximum runtime" in record.message:
            return Outcome.failed(f"terminated by run monitoring: {record.message}")
    return Outcome.cancelled("cancelled by user")


def session_run_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Outcome:
    """The outcome of a session-step run that ended without finalising its session."""
    if run.status == dg.DagsterRunStatus.CANCELED:
        why = interruption(instance, run.run_id)
        return Outcome(why.status, f"session step run {run.run_id[:8]} was terminated: {why.reason}")
    error = run_error(instance, run) or "no error recorded"
    return Outcome.failed(f"session step run {run.run_id[:8]} ended {run.status.value}: {error}")


def _selected(run: dg.DagsterRun) -> list[tuple[Level, Period]]:
    return [AGGREGATE_KEYS[key] for key in run.asset_selection or () if key in AGGREGATE_KEYS]


JOB_PERIODS = {job.name: period for period, job in PERIOD_JOBS.items()}


def period_of(run: dg.DagsterRun) -> Period | None:
    """The period a run materialized: its period job's, else the one period of its selected assets."""
    if run.job_name in JOB_PERIODS:
        return JOB_PERIODS[run.job_name]
    periods = {period for _, period in _selected(run)}
    return periods.pop() if len(periods) == 1 else None


def period_runs(
    instance: dg.DagsterInstance, tags: Mapping[str, str] | None = None, run_ids: Sequence[str] | None = None
) -> list[PeriodRun]:
    """The period runs carrying `tags` (or among `run_ids`), with their real status and error."""
    result = []
    filters = dg.RunsFilter(tags=dict(tags or {}), run_ids=list(run_ids) if run_ids is not None else None)
    for run in instance.get_runs(filters=filters):
        period = period_of(run)
        first = run.tags.get(RANGE_START_TAG) or run.tags.get(PARTITION_TAG)
        last = run.tags.get(RANGE_END_TAG) or run.tags.get(PARTITION_TAG)
        if period is None or not first or not last:
            continue
        result.append(
            PeriodRun(
                run_id=run.run_id,
                period=period,
                first_key=first,
                last_key=last,
                status=run.status,
                error=run_error(instance, run) if run.status in ENDED_BADLY else None,
                levels=tuple(level for level, _ in _selected(run)) or LEVELS,
            )
        )
    return sorted(result, key=lambda r: (PERIODS.index(r.period), r.first_key))


def expected_periods(tags: Mapping[str, str]) -> tuple[Period, ...]:
    """The periods an execution materializes: all four unless its tags say fewer."""
    if tags.get(PERIODS_TAG):
        return tuple(Period(p) for p in tags[PERIODS_TAG].split(","))
    return PERIODS


def selected_periods(asset_keys: Sequence[dg.AssetKey] | None) -> tuple[Period, ...]:
    """The periods whose aggregate assets a backfill selected."""
    selected = {AGGREGATE_KEYS[key][1] for key in asset_keys or () if key in AGGREGATE_KEYS}
    return tuple(p for p in PERIODS if p in selected)


def linked(
    instance: dg.DagsterInstance,
    execution_id: str,
    link: Mapping[str, str],
    sync_type: SyncType,
    periods: Sequence[Period] = PERIODS,
    exclude_run_id: str | None = None,
) -> Execution:
    """An execution judged from the period runs that carry its link tag."""
    runs = [r for r in period_runs(instance, link) if r.run_id != exclude_run_id]
    seen = {r.period for r in runs}
    missing = [f"no {p} run in this execution" for p in periods if p not in seen]
    return Execution(id=execution_id, sync_type=sync_type, runs=runs, missing=missing)


def tagged(instance: dg.DagsterInstance, execution_id: str, tags: Mapping[str, str]) -> Execution:
    """An execution linked by `sizeagg/execution` (tick, late data, CLI), judged from its runs."""
    return linked(
        instance, execution_id, {EXECUTION_TAG: execution_id}, sync_type_of(tags), expected_periods(tags)
    )


def standalone(instance: dg.DagsterInstance, run_id: str, day: date, sync_type: SyncType) -> Execution:
    """A session step launched on its own: judge the four partitions containing `day`."""
    missing = []
    runs = []
    for period, window in windows_for_date(day).items():
        absent = [
            level.asset_name(period)
            for level in LEVELS
            if not materialized(instance, dg.AssetKey(level.asset_name(period)), window.key)
        ]
        if absent:
            missing.append(f"{period} partition {window.key} was never materialized ({', '.join(absent)})")
        else:
            runs.append(PeriodRun(run_id, period, window.key, window.key, dg.DagsterRunStatus.SUCCESS))
    return Execution(id=ExecutionId.single_run(run_id), sync_type=sync_type, runs=runs, missing=missing)


def backfill_execution(instance: dg.DagsterInstance, backfill: PartitionBackfill) -> Execution:
    """A backfill as one execution: the periods it selected, judged from its runs."""
    return linked(
        instance,
        ExecutionId.backfill(backfill.backfill_id),
        {BACKFILL_TAG: backfill.backfill_id},
        sync_type_of(backfill.tags),
        selected_periods(backfill.asset_selection),
    )


def execution_of_session_run(instance: dg.DagsterInstance, run: dg.DagsterRun, day: date) -> Execution:
    """The execution a session-step run belongs to, judged from the runs that share its link.

    `day` is the date a session step launched on its own reports on.
    """
    tags = run.tags
    sync_type = sync_type_of(tags)
    if EXECUTION_TAG in tags:
        execution_id = tags[EXECUTION_TAG]
        return linked(
            instance,
            execution_id,
            {EXECUTION_TAG: execution_id},
            sync_type,
            expected_periods(tags),
            run.run_id,
        )
    if BACKFILL_TAG in tags:
        backfill = instance.get_backfill(tags[BACKFILL_TAG])
        periods = selected_periods(backfill.asset_selection) if backfill else PERIODS
        if periods:
            link = {BACKFILL_TAG: tags[BACKFILL_TAG]}
            return linked(
                instance, ExecutionId.backfill(tags[BACKFILL_TAG]), link, sync_type, periods, run.run_id
            )
    # Launched on its own (or a backfill of the session step alone).
    return standalone(instance, run.run_id, day, sync_type)
