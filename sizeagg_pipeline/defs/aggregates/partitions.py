"""Time-window partitions of the four periods, on the business calendar.

All four start on the same quarter-aligned date (SIZEAGG_START_DATE) and include
the current, still-open period (`end_offset=1`), which is recomputed "to date"
until it closes. They share one start because mixed start dates split single-run
backfills into random chunks (docs/design.md).
"""

from __future__ import annotations

import dagster as dg

from ...core.periods import Period, Window, windows_between
from ...core.settings import calendar

CALENDAR = calendar()
_START = CALENDAR.start_date.isoformat()
_TZ = CALENDAR.timezone

PARTITIONS: dict[Period, dg.TimeWindowPartitionsDefinition] = {
    Period.DAILY: dg.DailyPartitionsDefinition(start_date=_START, timezone=_TZ, end_offset=1),
    # day_offset=1: ISO weeks, keyed by their Monday (the default starts on Sunday).
    Period.WEEKLY: dg.WeeklyPartitionsDefinition(start_date=_START, day_offset=1, timezone=_TZ, end_offset=1),
    Period.MONTHLY: dg.MonthlyPartitionsDefinition(start_date=_START, timezone=_TZ, end_offset=1),
    # There is no quarterly class; a cron on the 1st of Jan/Apr/Jul/Oct is the same thing.
    Period.QUARTERLY: dg.TimeWindowPartitionsDefinition(
        start=_START, cron_schedule="0 0 1 */3 *", fmt="%Y-%m-%d", timezone=_TZ, end_offset=1
    ),
}


def context_windows(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, period: Period
) -> list[Window]:
    """The windows of a run, whether it holds one partition or a range."""
    key_range = context.partition_key_range
    return windows_between(period, key_range.start, key_range.end)


def materialized(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str) -> bool:
    """Has `partition` of `asset` ever been materialized (its latest record exists)?"""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1
    )
    return bool(records.records)
