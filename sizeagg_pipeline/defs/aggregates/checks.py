"""Asset checks of the aggregates and the raw tables: is this number right?

* ``raw_rows_valid`` (on every aggregate asset, blocking): the write's own
  validation of exactly the raw rows it reads (its windows and the window before),
  reported as a check. A failure stops that partition, nothing written, with the
  rule, table and rows named. It is attached to the aggregates rather than to the
  raw assets so it gates the write whatever the raw assets become.
* ``no_invalid_rows`` (on the raw assets): the same rules over the whole raw table,
  for a DBA who wants to sweep it from the raw asset's Checks tab.
* ``data_count_matches_raw`` and ``one_row_per_<level>`` (on every aggregate asset):
  run after the write in the same run, over the run's windows; launched on their own
  (the Checks tab's "Execute") they check the windows of the last `lookback_days`
  days, which is how late raw rows show up as stale aggregates. Windows kept because
  their raw data is gone (`core/horizon.py`) are not compared with what is left.
* ``complete_raw_history`` (on every aggregate asset, WARN, emitted by the write): did
  this materialization compute every window from complete raw data, or keep some
  slices as they were because raw data before the horizon is gone?

All of them are set-based SQL in `core/quality.py`; this module only wires them.
"""

from collections.abc import Iterator, Sequence
from datetime import timedelta

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from ...core import quality
from ...core.aggregation import Violations, WriteResult
from ...core.horizon import read_horizon
from ...core.levels import LEVELS, Level
from ...core.periods import PERIODS, Period, Window, window_containing, windows_between
from ...dagster_private import Metadata
from ..resources import AppDatabase
from .partitions import CALENDAR

RAW_CHECK = "raw_rows_valid"
HISTORY_CHECK = "complete_raw_history"
RAW_TABLE_CHECK = "no_invalid_rows"
DATA_COUNT_CHECK = "data_count_matches_raw"


def coverage_check_name(level: Level) -> str:
    return f"one_row_per_{level.name}"


def check_result(
    finding: quality.Finding,
    check_name: str | None = None,
    asset: dg.AssetKey | None = None,
    **extra: str | int,
) -> dg.AssetCheckResult:
    """A finding of `core/quality.py` as an ERROR-severity check result."""
    metadata: Metadata = {**finding.counts, **extra}
    if finding.examples:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in finding.examples))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check_name,
        passed=finding.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=finding.description,
        metadata=metadata,
    )


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
    level: Level, windows: Sequence[Window], violations: Violations | None, result: WriteResult | None = None
) -> dg.AssetCheckResult:
    """`raw_rows_valid` as the write's own validation found it: no second scan of the raw rows.

    `violations` is None when the write validated its rows and went ahead (`result`).
    """
    first, last = windows[0].previous().start, windows[-1].end
    if result is not None and result.read_from is None:
        finding = quality.Finding(True, f"this write read no {level.raw.name} rows: {result.kept}")
        return check_result(finding, RAW_CHECK, rows_read="none")
    if result is not None and result.read_from is not None:
        first = result.read_from
    where = f"collected_date {first}..{last}"
    if violations is None:
        finding = quality.Finding(
            True,
            f"the {level.raw.name} rows this write read ({where}) have no negative or NULL sizes "
            "and no unknown instance_id",
        )
    else:
        finding = quality.raw_finding(violations, where)
    return check_result(finding, RAW_CHECK, rows_read=f"{first}..{last}")


def history_check_spec(level: Level, period: Period) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        HISTORY_CHECK,
        asset=level.asset_name(period),
        description=(
            f"Every window this materialization covered was computed from complete {level.raw.name} "
            "rows. WARN when some slices were kept exactly as they were because the raw data of their "
            "window, or of the window before, is gone (the raw table's horizon): nothing was lost, "
            "but those slices were not recomputed."
        ),
    )


def history_check_result(level: Level, result: WriteResult) -> dg.AssetCheckResult:
    """`complete_raw_history` of one write: passed, or WARN naming the kept slices and why."""
    kept = result.kept
    metadata: Metadata = {"windows": result.window_text}
    if kept is None:
        description = f"every window was computed from complete {level.raw.name} rows"
    else:
        description = str(kept)
        metadata |= {"kept_partitions": kept.partitions, "kept_rows": kept.rows}
    return dg.AssetCheckResult(
        check_name=HISTORY_CHECK,
        passed=kept is None,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


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
    """The run's windows, or on its own the recent materialized ones; never those kept by the horizon.

    A kept slice was not recomputed from the raw rows that are left, so comparing it
    with them would only report the purge (`complete_raw_history` says it instead).
    """
    if context.has_partition_key or context.has_partition_key_range:
        key_range = context.partition_key_range
        windows = windows_between(period, key_range.start, key_range.end)
    else:
        today = CALENDAR.today()
        first = window_containing(period, today - timedelta(days=max(lookback, 0)))
        recent = windows_between(period, first.key, window_containing(period, today).key)
        windows = quality.materialized_windows(conn, level, recent)
    horizon = read_horizon(conn, level)
    return [w for w in windows if not horizon.keeps(w)]


def _build_window_checks(level: Level, period: Period) -> dg.AssetChecksDefinition:
    """Both after-write checks of one aggregate asset, in one step (one op, two results)."""
    asset = dg.AssetKey(level.asset_name(period))
    specs = [
        dg.AssetCheckSpec(
            DATA_COUNT_CHECK,
            asset=asset,
            description=(
                f"Every row's data_count equals the {level.counted} of {level.raw.name} in its window "
                "(fails when raw data changed after the aggregate was written)."
            ),
        ),
        dg.AssetCheckSpec(
            coverage_check_name(level),
            asset=asset,
            description=(
                f"Every {level.name} with {level.raw.name} rows in a window has exactly one row for "
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
        text = (
            f"{windows[0].period} {windows[0].start}..{windows[-1].end}"
            if windows
            else "none materialized in the lookback, or all kept beyond the raw horizon"
        )
        yield check_result(data_count, DATA_COUNT_CHECK, asset, windows=text)
        yield check_result(coverage, coverage_check_name(level), asset, windows=text)

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
            return check_result(quality.raw_rows_valid(conn, level, None, None))

    return raw_table


RAW_TABLE_CHECKS = [_build_raw_table_check(level) for level in LEVELS]

raw_table_checks_job = dg.define_asset_job(
    "raw_table_checks_job",
    selection=dg.AssetSelection.checks(*RAW_TABLE_CHECKS),
    description="Sweep the whole raw tables for negative or NULL sizes and orphan instance ids.",
)
