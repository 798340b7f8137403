"""`raw_data_changes`: late or corrected raw rows re-materialize exactly what they invalidate.

Every few minutes the sensor fingerprints the recent raw days (`core/late_data.py`)
and compares them with the fingerprints in its cursor. A changed day that was
already aggregated re-runs the partitions containing it and the ones after them
whose previous-window comparison it feeds, as one execution the gate then closes
with a session. A purge is not late data: nothing before a raw table's horizon is
re-materialized, and a horizon that moved is reported as an observation of its raw
asset (the UI shows it as the asset's metadata).
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ...core import late_data
from ...core.horizon import Horizon, horizons
from ...core.levels import LEVELS, level_named
from ...core.periods import PERIODS, Period
from ...core.settings import operations, utc_now
from .. import automation
from ..aggregates.jobs import PERIOD_JOBS
from ..aggregates.metadata import horizon_metadata
from ..aggregates.partitions import CALENDAR
from ..resources import AppDatabase
from ..sessions.vocabulary import ExecutionId, Trigger, execution_tags, range_tags


@dataclass
class ObservationCursor:
    since: str
    generation: int  # how many late-data executions this sensor launched
    days: dict[str, dict[str, str]]  # level → day → fingerprint
    horizons: dict[str, str]  # level → the horizon last reported (Horizon.text)

    @classmethod
    def load(cls, text: str | None) -> "ObservationCursor | None":
        if not text:
            return None
        data = json.loads(text)
        return cls(data["since"], data["generation"], data["days"], data.get("horizons", {}))

    def dump(self) -> str:
        state = {"since": self.since, "generation": self.generation, "days": self.days}
        return json.dumps({**state, "horizons": self.horizons}, sort_keys=True)


def horizon_observations(current: dict[str, Horizon], reported: dict[str, str]) -> list[dg.AssetObservation]:
    """An observation of each raw asset whose horizon differs from the one last reported."""
    return [
        dg.AssetObservation(
            asset_key=level_named(level).raw.name,
            metadata=horizon_metadata(horizon),
        )
        for level, horizon in current.items()
        if reported.get(level) != horizon.text()
    ]


def materialized_partitions(instance: dg.DagsterInstance) -> dict[str, dict[Period, set[str]]]:
    """Per level, the partitions of each period materialized at least once."""
    return {
        level.name: {
            period: instance.get_materialized_partitions(dg.AssetKey(level.asset_name(period)))
            for period in PERIODS
        }
        for level in LEVELS
    }


def late_data_requests(execution_id: str, plan: late_data.LateDataPlan) -> list[dg.RunRequest]:
    """One run per period and stretch of consecutive windows needing the same levels."""
    groups = [
        (period, first, last, levels)
        for period, windows in plan.items()
        for first, last, levels in late_data.run_groups(windows)
    ]
    tags = execution_tags(execution_id, trigger=Trigger.LATE_DATA, periods=list(plan), runs=len(groups))
    requests = []
    for period, first, last, levels in groups:
        run_tags = {**tags, **(range_tags(first.key, last.key) if first != last else {})}
        both = len(levels) == len(LEVELS)
        requests.append(
            dg.RunRequest(
                run_key=f"{execution_id}:{period}:{first.key}:{last.key}:{'+'.join(sorted(levels))}",
                job_name=PERIOD_JOBS[period].name,
                partition_key=first.key if first == last else None,
                asset_selection=None
                if both
                else [dg.AssetKey(level.asset_name(period)) for level in LEVELS if level.name in levels],
                tags=run_tags,
            )
        )
    return requests


def observe_tick(
    instance: dg.DagsterInstance, engine: sa.Engine, cursor: str | None, now: datetime, days: int
) -> dg.SensorResult:
    """Compare the raw days' fingerprints with the last ones; re-run what changed days invalidate."""
    since = CALENDAR.today(now) - timedelta(days=days)
    with engine.connect() as conn:
        current = late_data.fingerprints(conn, since)
        horizon = horizons(conn)
    reported = {level: h.text() for level, h in horizon.items()}
    state = ObservationCursor.load(cursor)
    if state is None:
        baseline = ObservationCursor(since.isoformat(), 0, current, reported)
        count = len(set().union(*current.values()))
        return dg.SensorResult(
            skip_reason=f"baseline: {count} raw days since {since}",
            cursor=baseline.dump(),
            asset_events=horizon_observations(horizon, {}),
        )
    observations = horizon_observations(horizon, state.horizons)
    compare_from = max(since, date.fromisoformat(state.since))
    changed = late_data.changed_days(state.days, current, compare_from)
    materialized = materialized_partitions(instance) if changed else {}
    plan = late_data.affected_windows(changed, materialized, horizon) if changed else {}
    generation = state.generation + (1 if plan else 0)
    new_cursor = ObservationCursor(since.isoformat(), generation, current, reported).dump()
    changed_text = "; ".join(
        f"{level}: {', '.join(d.isoformat() for d in ds)}" for level, ds in changed.items()
    )
    if not plan:
        text = f"changed, not aggregated yet: {changed_text}" if changed else "no raw day changed"
        if changed and any(h.day is not None for h in horizon.values()):
            text = f"changed, not aggregated yet or kept beyond the raw horizon: {changed_text}"
        return dg.SensorResult(skip_reason=text, cursor=new_cursor, asset_events=observations)
    execution_id = ExecutionId.late_data(generation, hashlib.sha1(changed_text.encode()).hexdigest()[:8])
    requests = late_data_requests(execution_id, plan)
    summary = "; ".join(
        f"{p} " + ", ".join(f"{w.key} ({'+'.join(sorted(levels))})" for w, levels in windows.items())
        for p, windows in plan.items()
    )
    events = [
        dg.AssetObservation(
            asset_key=level_named(level).raw.name,
            metadata={
                "changed_days": ", ".join(d.isoformat() for d in level_days),
                "re_materialized": summary,
                "execution": execution_id,
            },
        )
        for level, level_days in changed.items()
    ]
    return dg.SensorResult(run_requests=requests, cursor=new_cursor, asset_events=[*observations, *events])


@automation.sensor(
    "raw_data_changes",
    operations().observe_interval,
    "Observes the raw tables per recent day (row count, latest collected_at, checksum; "
    "SIZEAGG_LATE_DATA_DAYS days back). When an already aggregated day changed, "
    "re-materializes exactly the daily/weekly/monthly/quarterly partitions containing it "
    "and the following ones whose previous-window comparison it feeds (only partitions "
    "materialized before), as one execution the gate then closes with a session. Never "
    "re-materializes a window beyond a raw table's horizon (purged raw data is not late data); "
    "reports each raw table's horizon as an observation of its raw asset when it moves.",
    jobs=list(PERIOD_JOBS.values()),
)
def raw_data_changes(context: dg.SensorEvaluationContext, db: AppDatabase) -> dg.SensorResult:
    return observe_tick(context.instance, db.engine, context.cursor, utc_now(), operations().late_data_days)
