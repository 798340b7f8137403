"""Asset checks: is this number right, and is the session honest?

* ``raw_rows_valid`` (on every aggregate asset, blocking): the write's own
  validation (contract §3.3) of exactly the raw rows it reads (its windows and the
  window before), reported as a check. A failure stops that partition, nothing
  written, with the rule, table and rows named. It is attached to the aggregates rather than to the
  raw assets so it gates the write whatever the raw assets become (external specs
  today, perhaps partitioned observable sources later).
* ``no_invalid_rows`` (on the raw assets): the same rules over the whole raw table,
  for a DBA who wants to sweep it from the raw asset's Checks tab.
* ``data_count_matches_raw`` and ``one_row_per_instance`` / ``one_row_per_database``
  (on every aggregate asset): run after the write in the same run, over the run's
  windows; launched on their own (the Checks tab's "Execute") they check the windows
  of the last `lookback_days` days, which is how late raw rows show up as stale
  aggregates.
* ``counts_add_up`` and ``no_session_running_too_long`` (on ``aggregation_session``).

All of them are set-based SQL in `core.quality`; this module only wires them.
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from .core import aggregation, quality
from .core.aggregation import DATABASE, INSTANCE, LEVELS, Level
from .core.periods import PERIODS, Period, Window, window_containing, windows_between
from .partitions import CALENDAR
from .resources import AppDatabase

RAW_CHECK = "raw_rows_valid"
RAW_TABLE_CHECK = "no_invalid_rows"
DATA_COUNT_CHECK = "data_count_matches_raw"
SESSION_ASSET = dg.AssetKey("aggregation_session")
DEFAULT_MAX_RUNTIME_SECONDS = 7200  # dagster.yaml's run_monitoring.max_runtime_seconds


def coverage_check_name(level: Level) -> str:
    return f"one_row_per_{level.name}"


def _metadata(finding: quality.Finding, **extra: object) -> dict[str, object]:
    metadata: dict[str, object] = {**finding.counts, **extra}
    if finding.examples:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in finding.examples))
    return metadata


def _result(
    finding: quality.Finding,
    check_name: str | None = None,
    asset: dg.AssetKey | None = None,
    **extra: object,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check_name,
        passed=finding.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=finding.description,
        metadata=_metadata(finding, **extra),
    )


def _window_text(windows: Sequence[Window]) -> str:
    return f"{windows[0].period} {windows[0].start}..{windows[-1].end}"


# --------------------------------------------------------------------------- the gate


def raw_check_spec(level: Level, period: Period) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        RAW_CHECK,
        asset=level.asset_name(period),
        blocking=True,
        description=(
            f"Before the write: the {level.raw.name} rows this partition reads (its window and "
            f"the previous one) have no negative {', '.join(level.sizes)}, no NULL "
            f"{', '.join(level.required)} and no instance_id missing from instances. "
            "Blocking: on failure nothing of the partition is written."
        ),
    )


def raw_check_result(
    level: Level, windows: Sequence[Window], violations: aggregation.Violations | None
) -> dg.AssetCheckResult:
    """`raw_rows_valid` as the write's own validation found it: no second scan of the raw rows.

    `violations` is None when the write validated its rows and went ahead.
    """
    first, last = windows[0].previous().start, windows[-1].end
    where = f"collected_date {first}..{last}"
    if violations is None:
        finding = quality.Finding(
            True,
            f"the {level.raw.name} rows this write read ({where}) have no negative or NULL sizes "
            "and no unknown instance_id",
        )
    else:
        finding = quality.raw_finding(violations, where)
    return _result(finding, RAW_CHECK, rows_read=f"{first}..{last}")


# --------------------------------------------------------------------------- after the write


class WindowCheckConfig(dg.Config):
    lookback_days: int = Field(
        default=92,
        description=(
            "Only when the check runs without a partition (the Checks tab's Execute): check "
            "every materialized window of this period that overlaps the last lookback_days days."
        ),
    )


def _check_windows(
    context: dg.AssetCheckExecutionContext, conn: sa.Connection, level: Level, period: Period, lookback: int
) -> list[Window]:
    """The run's windows; on its own, the recent windows that were materialized."""
    if context.has_partition_key or context.has_partition_key_range:
        key_range = context.partition_key_range
        return windows_between(period, key_range.start, key_range.end)
    today = CALENDAR.today()
    first = window_containing(period, today - timedelta(days=max(lookback, 0)))
    recent = windows_between(period, first.key, window_containing(period, today).key)
    return quality.materialized_windows(conn, level, recent)


def _build_window_checks(level: Level, period: Period) -> dg.AssetChecksDefinition:
    """Both after-write checks of one aggregate asset, in one step (one op, two results)."""
    asset = dg.AssetKey(level.asset_name(period))
    unit = "days with a non-deleted row" if level is INSTANCE else "raw rows"
    group = "instance" if level is INSTANCE else "(instance, database)"
    specs = [
        dg.AssetCheckSpec(
            DATA_COUNT_CHECK,
            asset=asset,
            description=(
                f"Every row's data_count equals the {unit} of {level.raw.name} in its window "
                "(fails when raw data changed after the aggregate was written)."
            ),
        ),
        dg.AssetCheckSpec(
            coverage_check_name(level),
            asset=asset,
            description=(
                f"Every {group} with {level.raw.name} rows in a window has exactly one row for "
                "that window, and no row exists without raw data."
            ),
        ),
    ]

    @dg.multi_asset_check(specs=specs, name=f"{asset.to_python_identifier()}_consistency")
    def _checks(
        context: dg.AssetCheckExecutionContext, db: AppDatabase, config: WindowCheckConfig
    ) -> Iterator[dg.AssetCheckResult]:
        with db.engine.connect() as conn:
            windows = _check_windows(context, conn, level, period, config.lookback_days)
            data_count = quality.data_count_matches_raw(conn, level, windows)
            coverage = quality.one_row_per_group(conn, level, windows)
        text = _window_text(windows) if windows else "none materialized in the lookback"
        yield _result(data_count, DATA_COUNT_CHECK, asset, windows=text)
        yield _result(coverage, coverage_check_name(level), asset, windows=text)

    return _checks


WINDOW_CHECKS = [_build_window_checks(level, period) for level in LEVELS for period in PERIODS]


# --------------------------------------------------------------------------- raw tables


def _build_raw_table_check(level: Level) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(level.raw.name),
        name=RAW_TABLE_CHECK,
        description=(
            f"The whole {level.raw.name} table: no negative {', '.join(level.sizes)}, no NULL "
            f"{', '.join(level.required)}, no instance_id missing from instances. The aggregates "
            f"enforce the same rules on the rows they read ({RAW_CHECK}, blocking)."
        ),
    )
    def raw_table(db: AppDatabase) -> dg.AssetCheckResult:
        with db.engine.connect() as conn:
            return _result(quality.raw_rows_valid(conn, level, None, None))

    return raw_table


RAW_TABLE_CHECKS = [_build_raw_table_check(level) for level in (DATABASE, INSTANCE)]


# --------------------------------------------------------------------------- sessions


@dg.asset_check(
    asset=SESSION_ASSET,
    description=(
        "Every finished session: successful_instances + failed_instances = total_instances = "
        "its sync_instance_records, the counters match the records' statuses, and no record "
        "is still pending or running."
    ),
)
def counts_add_up(db: AppDatabase) -> dg.AssetCheckResult:
    with db.engine.connect() as conn:
        return _result(quality.session_counts_add_up(conn))


class RuntimeCheckConfig(dg.Config):
    max_runtime_seconds: int = Field(
        default=0,
        description=(
            "A session running longer than this is stuck. 0: the Dagster instance's "
            f"run_monitoring.max_runtime_seconds, or {DEFAULT_MAX_RUNTIME_SECONDS} when that is unset."
        ),
    )


@dg.asset_check(
    asset=SESSION_ASSET,
    description="No session is still `running` longer than the maximum run time of an execution.",
)
def no_session_running_too_long(
    context: dg.AssetCheckExecutionContext, db: AppDatabase, config: RuntimeCheckConfig
) -> dg.AssetCheckResult:
    limit = (
        config.max_runtime_seconds
        or context.instance.run_monitoring_max_runtime_seconds
        or DEFAULT_MAX_RUNTIME_SECONDS
    )
    cutoff = datetime.now(UTC) - timedelta(seconds=limit)
    with db.engine.connect() as conn:
        return _result(quality.sessions_running_too_long(conn, cutoff, limit), max_runtime_seconds=limit)


SESSION_CHECKS = [counts_add_up, no_session_running_too_long]
ALL_CHECKS = [*WINDOW_CHECKS, *RAW_TABLE_CHECKS, *SESSION_CHECKS]

raw_table_checks_job = dg.define_asset_job(
    "raw_table_checks_job",
    selection=dg.AssetSelection.checks(*RAW_TABLE_CHECKS),
    description="Sweep the whole raw tables for negative or NULL sizes and orphan instance ids.",
)
