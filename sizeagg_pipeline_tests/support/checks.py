"""Running the asset checks the way the UI runs them, and reading their evaluations.

Checks run inside the period jobs (with the partition of the run) or launched on
their own: a run that selects only checks, which is what the Checks tab's Execute
launches. `Evaluation` is what the tests read of an `AssetCheckEvaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.aggregates import checks as aggregate_checks
from sizeagg_pipeline.defs.aggregates.partitions import CALENDAR
from sizeagg_pipeline.defs.sessions import checks as session_checks
from sizeagg_pipeline_tests.support.data import add_instances, fill_days


@dataclass(frozen=True)
class Data:
    ids: list[int]
    first: date
    last: date


def recent_days(engine: sa.Engine) -> Data:
    """Three instances, two databases each, every day of the last 20 (checks look back 92)."""
    today = CALENDAR.today()
    first, last = today - timedelta(days=20), today - timedelta(days=1)
    with engine.begin() as conn:
        ids = add_instances(conn, 3)
        fill_days(conn, ids, first, last)
    return Data(ids, first, last)


@dataclass(frozen=True)
class Evaluation:
    passed: bool
    blocking: bool | None
    description: str
    metadata: Mapping[str, dg.MetadataValue]


Evaluations = dict[tuple[str, str], Evaluation]


def evaluations(result: dg.ExecuteInProcessResult) -> Evaluations:
    return {
        (e.asset_key.to_user_string(), e.check_name): Evaluation(
            e.passed, e.blocking, e.description or "", e.metadata
        )
        for e in result.get_asset_check_evaluations()
    }


def window_checks(asset: str) -> dg.AssetChecksDefinition:
    (found,) = [
        c for c in aggregate_checks.WINDOW_CHECKS if dg.AssetKey(asset) in {k.asset_key for k in c.check_keys}
    ]
    return found


# Runs that select only checks, without a partition: what the Checks tab's Execute launches.
CHECK_JOBS = {
    "raw": aggregate_checks.RAW_TABLE_CHECKS,
    "sessions": session_checks.SESSION_CHECKS,
    "weekly": [window_checks("database_size_weekly"), window_checks("instance_size_weekly")],
}
CHECK_DEFS = dg.Definitions.merge(
    defs,
    dg.Definitions(
        jobs=[
            dg.define_asset_job(f"{name}_checks", selection=dg.AssetSelection.checks(*targets))
            for name, targets in CHECK_JOBS.items()
        ]
    ),
)


def run_checks(
    instance: dg.DagsterInstance, name: str, window_config: Mapping[str, object] | None = None
) -> Evaluations:
    """Run one group of checks on its own; `window_config` configures the window checks."""
    job = CHECK_DEFS.resolve_job_def(f"{name}_checks")
    run_config = {
        "ops": {c.node_def.name: {"config": dict(window_config)} for c in CHECK_JOBS[name]}
        if window_config
        else {}
    }
    result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
    assert result.success
    return evaluations(result)
