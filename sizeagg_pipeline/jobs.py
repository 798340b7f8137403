"""One job per period (both levels share a partitions definition) and the session job.

Assets of different partitions definitions cannot share a run, so a daily tick is
four period runs and then one session run (dagster-notes §2.4).
"""

from __future__ import annotations

import dagster as dg

from .assets import assets_of
from .core.periods import PERIODS, Period
from .session_asset import aggregation_session

PERIOD_JOBS: dict[Period, dg.UnresolvedAssetJobDefinition] = {
    period: dg.define_asset_job(
        f"{period}_aggregation_job",
        selection=assets_of(period),
        description=f"Database- and instance-level {period} aggregates for a partition or range.",
    )
    for period in PERIODS
}

aggregation_session_job = dg.define_asset_job(
    "aggregation_session_job",
    selection=[aggregation_session],
    description="Write the session of an aggregation execution (launched by the gate sensor).",
)
