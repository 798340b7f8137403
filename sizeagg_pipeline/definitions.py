"""The one `Definitions` of sizeagg: everything under `defs/`, plus the executor.

`defs/` holds one folder per domain (aggregates, sessions, schedule, late_data,
forecast) and the resources; Dagster's `load_from_defs_folder` finds every asset,
check, job, schedule and sensor defined at module level there.
"""

from pathlib import Path

import dagster as dg

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    # Each step is one SQL transaction: a process per step buys nothing but spawn time.
    dg.Definitions(executor=dg.in_process_executor),
)
