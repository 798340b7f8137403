"""Give the demo the history that charts and forecasts need, then run them.

`make demo` aggregates the last 14 days through daily ticks; a growth chart over 12
weeks and a 90-day forecast need the aggregates of the whole demo range. This does
what an operator does once after installing sizeagg: one ranged run per period over
every partition from the first with raw data to the open one, today's, computed "to
date" as a tick does (what a UI backfill with single-run policy launches), the
raw-table checks, and the forecast as of every day. The
demo's partitions start on the first day of its data's first quarter (Makefile), so
the catalog shows every partition with data materialized.
The runs land in DAGSTER_HOME, so the UI shows their checks, charts and forecast.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.core.periods import PERIODS, Period, span_text, window_containing
from sizeagg_pipeline.core.schema import database_size_stats, make_engine
from sizeagg_pipeline.core.settings import calendar, database_url, state_dir

# Thresholds sized to the demo's databases (up to ~40 GB) and instances (up to ~100 GB), so
# the forecast has something to flag; a deployment sets its own (docs/ui.md).
DEMO_THRESHOLDS = {"database_threshold_mb": 36_864, "instance_threshold_mb": 102_400}


def main() -> int:
    warnings.filterwarnings("ignore", module="dagster")
    os.environ.setdefault("DAGSTER_HOME", str(state_dir() / "dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    from sizeagg_pipeline.cli.run import QUIET
    from sizeagg_pipeline.definitions import defs
    from sizeagg_pipeline.defs.aggregates.checks import raw_table_checks_job
    from sizeagg_pipeline.defs.aggregates.jobs import PERIOD_JOBS
    from sizeagg_pipeline.defs.aggregates.partitions import PARTITIONS
    from sizeagg_pipeline.defs.forecast.schedule import capacity_forecast_job

    engine = make_engine(database_url())
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.select(
                sa.func.min(database_size_stats.c.collected_date),
                sa.func.max(database_size_stats.c.collected_date),
            )
        ).one()
    engine.dispose()
    if first is None:
        print("demo-insight: no raw data; run `sizeagg demo-data` first", file=sys.stderr)
        return 2
    first = max(first, calendar().start_date)
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for period in PERIODS:
            # A week that began before the first partition (SIZEAGG_START_DATE is a quarter's
            # first day, not always a Monday) is no partition: start at the first one.
            first_key = PARTITIONS[period].get_first_partition_key()
            start = max(window_containing(period, first).key, first_key or "")
            # Up to the open window (today's day, this week, …), "to date" as a tick does.
            end = PARTITIONS[period].get_last_partition_key() or window_containing(period, last).key
            result = defs.resolve_job_def(PERIOD_JOBS[period].name).execute_in_process(
                run_config=QUIET,
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": start,
                    "dagster/asset_partition_range_end": end,
                    "sizeagg/demo": "history",
                },
                raise_on_error=False,
            )
            checks = result.get_asset_check_evaluations()
            passed = sum(c.passed for c in checks)
            status = "ok" if result.success else "FAILED"
            print(f"{period:<9} {span_text(start, end)}: {status}, checks {passed}/{len(checks)} passed")
            failed += not result.success
        result = defs.resolve_job_def(raw_table_checks_job.name).execute_in_process(
            run_config=QUIET, instance=instance, raise_on_error=False
        )
        checks = result.get_asset_check_evaluations()
        print(f"raw tables: checks {sum(c.passed for c in checks)}/{len(checks)} passed")
        result = defs.resolve_job_def(capacity_forecast_job.name).execute_in_process(
            run_config={**QUIET, "ops": {"capacity_forecast": {"config": DEMO_THRESHOLDS}}},
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": PARTITIONS[Period.DAILY].get_last_partition_key()
                or last.isoformat(),
                "sizeagg/demo": "history",
            },
            raise_on_error=False,
        )
        failed += not result.success
        for event in result.get_asset_materialization_events()[-1:]:
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            print(
                f"forecast as of {last}: {meta['databases_forecast']} databases, "
                f"{meta['instances_forecast']} instances; within {meta['flagged_within_days']} days "
                f"{meta['flagged_databases']} database(s) and {meta['flagged_instances']} instance(s) "
                f"reach their threshold, {meta['already_over_threshold']} already over"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
