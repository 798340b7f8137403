"""Missed deadlines as Dagster freshness checks: one `freshness_check` per aggregate asset.

By the business-time deadline (SIZEAGG_FRESHNESS_DEADLINE, default 06:00) the window
of each period that closed before that day must be materialized: yesterday's daily
partition every day, last week's on Monday, and so on (on other days the same
closed window is still expected, so a week that never arrived stays overdue).

Dagster's `build_time_partition_freshness_checks` expects the partition *containing*
the deadline; with `end_offset=1` (the open period is a partition too) that is
today's, which the tick never writes, so it would fail every day. These checks keep
its name, metadata and severity and expect the closed window instead; Dagster's
`build_sensor_for_freshness_checks` evaluates them (it re-runs a passed check when
its `dagster/fresh_until_timestamp` has passed, a failed one after the asset was
materialized again). The alert sensor tells a person about a failed one.
"""

import warnings
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import dagster as dg

from ...core.periods import Period, Window, window_containing
from ...core.settings import alerting, operations, utc_now
from .. import automation
from ..aggregates.assets import AGGREGATE_ASSETS
from ..aggregates.partitions import CALENDAR, materialized

FRESHNESS_CHECK = "freshness_check"  # Dagster's name for its freshness checks
DEADLINE = alerting().freshness_deadline
DEADLINE_CRON = f"{DEADLINE.minute} {DEADLINE.hour} * * *"
PARAMS = {"deadline_cron": DEADLINE_CRON, "timezone": CALENDAR.timezone}


def last_deadline(now: datetime, deadline: time = DEADLINE) -> datetime:
    """The latest deadline at or before `now`, in business time."""
    local = now.astimezone(CALENDAR.tz)
    today = datetime.combine(local.date(), deadline, CALENDAR.tz)
    return today if local >= today else today - timedelta(days=1)


def closed_window(period: Period, deadline_day: date) -> Window:
    """The last window of `period` that ended before `deadline_day`."""
    window = window_containing(period, deadline_day - timedelta(days=1))
    return window if window.end < deadline_day else window.previous()


def _result(
    context: dg.AssetCheckExecutionContext, key: dg.AssetCheckKey, period: Period, now: datetime
) -> dg.AssetCheckResult:
    deadline = last_deadline(now)
    window = closed_window(period, deadline.date())
    if window.start < CALENDAR.start_date:
        passed, text = (
            True,
            f"no {period} window has closed since the first partition ({CALENDAR.start_date})",
        )
    elif materialized(context.instance, key.asset_key, window.key):
        passed, text = True, f"partition {window.key} ({window}) was materialized"
    else:
        passed = False
        text = (
            f"partition {window.key} ({window}) was not materialized by "
            f"{deadline:%Y-%m-%d %H:%M} {CALENDAR.timezone}"
        )
    metadata: dict[str, dg.RawMetadataValue] = {
        "dagster/freshness_params": dg.MetadataValue.json(PARAMS),
        "dagster/latest_cron_tick_timestamp": dg.MetadataValue.timestamp(deadline),
        "expected_partition": window.key,
    }
    if passed:  # the freshness sensor evaluates it again once this has passed
        metadata["dagster/fresh_until_timestamp"] = dg.MetadataValue.timestamp(deadline + timedelta(days=1))
    else:
        metadata["dagster/overdue_seconds"] = round((now - deadline).total_seconds())
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata=metadata,
    )


PERIOD_OF = {asset.key: period for (_, period), asset in AGGREGATE_ASSETS.items()}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=key,
            metadata={"dagster/freshness_params": dg.MetadataValue.json(PARAMS)},
            description=(
                f"By {DEADLINE:%H:%M} {CALENDAR.timezone} (SIZEAGG_FRESHNESS_DEADLINE) the {period} "
                f"partition that closed before that day is materialized (yesterday's, for daily)."
            ),
        )
        for key, period in PERIOD_OF.items()
    ],
    can_subset=True,
    name="aggregate_freshness_checks",
)
def aggregate_freshness_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    now = utc_now()
    for key in context.selected_asset_check_keys:
        yield _result(context, key, PERIOD_OF[key.asset_key], now)


with warnings.catch_warnings():
    # Superseded by FreshnessPolicy, which judges any update, not the closed partition.
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=[aggregate_freshness_checks],
        minimum_interval_seconds=min(operations().sensor_interval, 60),
        name="freshness_checks_sensor",
        default_status=automation.RUNNING,
    )
