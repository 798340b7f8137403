"""One job per period: both levels of that period share a partitions definition and a run.

Assets of different partitions definitions cannot share a run (docs/design.md), so
a daily execution is four period runs and then one session run. Run readers
find a run's period from its job (`PERIOD_JOBS`), never by parsing names.
"""

from __future__ import annotations

import dagster as dg

from ...core.periods import PERIODS, Period
from ..alerts.freshness import aggregate_freshness_checks
from .assets import assets_of

PERIOD_JOBS: dict[Period, dg.UnresolvedAssetJobDefinition] = {
    period: dg.define_asset_job(
        f"{period}_aggregation_job",
        # The freshness checks judge "now", not the run's partition: their own sensor runs them.
        selection=dg.AssetSelection.assets(*assets_of(period))
        - dg.AssetSelection.checks(aggregate_freshness_checks),
        description=f"Database- and instance-level {period} aggregates for a partition or range.",
    )
    for period in PERIODS
}

period_jobs = list(PERIOD_JOBS.values())  # what `load_from_defs_folder` collects
