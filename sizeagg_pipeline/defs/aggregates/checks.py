"""Asset checks of the aggregates and the raw tables: is this number right?

* ``raw_rows_valid`` (on every aggregate asset, blocking): emitted by the write itself
  (`write_checks.py`).
* ``no_invalid_rows`` (on the raw assets): the same rules over the whole raw table,
  for a DBA who wants to sweep it from the raw asset's Checks tab.
* ``data_count_matches_raw`` and ``one_row_per_<level>`` (on every aggregate asset):
  run after the write in the same run, one evaluation per partition of the run;
  launched on their own (the Checks tab's "Execute", a subsettable check) they
  check the chosen windows or the materialized windows of the last `lookback_days`
  days, which is how late raw rows show up as stale aggregates. Windows kept because
  their raw data is gone (`core/horizon.py`) are not compared with what is left.
* ``complete_raw_history`` (on every aggregate asset, WARN, with the two above):
  was each window computed from complete raw data, or was its slice kept as it was
  because raw data of its window or the one before is gone? Nothing is lost either
  way; the warning says which slices a rewrite did not recompute.

One evaluation per partition, not one per run: Dagster plans a check of a
partitioned run once per partition of the run, and a planned evaluation that never
arrives shows as "Skipped". Per partition, every evaluation also covers exactly one
window, so its numbers are comparable with every other one. An evaluation over
several windows (launched on its own) carries window counts under other names, so
the check's plots never mix the two (docs/ui.md, Asset checks).

All of them are set-based SQL in `core/quality.py`; this module only wires them.
"""

from collections.abc import Collection, Iterator, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from ...core import quality
from ...core.horizon import read_horizon
from ...core.levels import LEVELS, Level
from ...core.periods import PERIODS, Period, Window, span_text, window_containing, windows_between
from ...dagster_private import Metadata
from ..resources import AppDatabase
from .partitions import CALENDAR

RAW_TABLE_CHECK = "no_invalid_rows"
DATA_COUNT_CHECK = "data_count_matches_raw"
HISTORY_CHECK = "complete_raw_history"
FAILURES_SHOWN = 3  # failing windows quoted in an evaluation over several windows


def coverage_check_name(level: Level) -> str:
    return f"one_row_per_{level.name}"


def _outcome(
    finding: quality.Finding,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **extra: str | int,
) -> dict[str, Any]:
    """What every result of a finding says: pass/fail at `severity`, why, and its numbers."""
    metadata: Metadata = {**finding.counts, **extra}
    if finding.examples:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in finding.examples))
    return {
        "passed": finding.passed,
        "severity": severity,
        "description": finding.description,
        "metadata": metadata,
    }


def severity_of(check_name: str | None) -> dg.AssetCheckSeverity:
    """Only a kept slice is a warning: nothing is wrong with it, it was not recomputed."""
    return dg.AssetCheckSeverity.WARN if check_name == HISTORY_CHECK else dg.AssetCheckSeverity.ERROR


def check_result(
    finding: quality.Finding,
    check_name: str | None = None,
    asset: dg.AssetKey | None = None,
    **extra: str | int,
) -> dg.AssetCheckResult:
    """A finding of `core/quality.py` as a check result (unpartitioned runs)."""
    return dg.AssetCheckResult(
        asset_key=asset, check_name=check_name, **_outcome(finding, severity_of(check_name), **extra)
    )


def partition_evaluation(
    asset: dg.AssetKey,
    check_name: str,
    window: Window,
    finding: quality.Finding,
    blocking: bool,
    **extra: str,
) -> dg.AssetCheckEvaluation:
    """One window's evaluation, recorded against its partition (what Dagster planned)."""
    return dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name=check_name,
        blocking=blocking,
        partition=window.key,
        **_outcome(finding, severity_of(check_name), **extra),
    )


def window_text(windows: Sequence[Window]) -> str:
    """`weekly 2026-11-02..2026-11-29`: the days a check covered."""
    return f"{windows[0].period} {span_text(windows[0].start, windows[-1].end)}"


# --------------------------------------------------------------------------- after the write


class WindowCheckConfig(dg.Config):
    windows: str = Field(
        default="",
        description=(
            "Only when the check runs without a partition (the Checks tab's Execute): the "
            "partition key of one window, or a range FIRST..LAST of partition keys. Empty: every "
            "materialized window that overlaps the last lookback_days days."
        ),
    )
    lookback_days: int = Field(
        default=92,
        description="Only without a partition and without `windows`: how many recent days to check.",
    )


def _chosen_windows(
    conn: sa.Connection, level: Level, period: Period, config: WindowCheckConfig
) -> list[Window]:
    """Launched on its own: the configured windows, or the recent windows that were materialized."""
    if config.windows:
        first, _, last = config.windows.partition("..")
        return windows_between(period, first.strip(), (last or first).strip())
    today = CALENDAR.today()
    first_window = window_containing(period, today - timedelta(days=max(config.lookback_days, 0)))
    recent = windows_between(period, first_window.key, window_containing(period, today).key)
    return quality.materialized_windows(conn, level, recent)


Findings = list[tuple[Window, quality.Finding]]


def _findings(
    conn: sa.Connection, level: Level, names: Collection[str], windows: Sequence[Window]
) -> dict[str, Findings]:
    """The selected checks, window by window: each finding covers exactly one window.

    A window kept because its raw data is gone was not recomputed from the raw rows
    that are left, so comparing it with them would only report the purge: the two
    comparisons pass it, saying why, and `complete_raw_history` warns.
    """
    horizon = read_horizon(conn, level)

    def history(conn: sa.Connection, level: Level, windows: Sequence[Window]) -> quality.Finding:
        if horizon.keeps(windows[0]):
            return quality.Finding(False, f"{windows[0]} was kept as it was, not recomputed: {horizon.gone}")
        return quality.Finding(True, f"{windows[0]} can be computed from complete {level.raw.name} rows")

    queries = {
        DATA_COUNT_CHECK: quality.data_count_matches_raw,
        coverage_check_name(level): quality.one_row_per_group,
        HISTORY_CHECK: history,
    }

    def finding(name: str, window: Window) -> quality.Finding:
        if horizon.keeps(window) and name != HISTORY_CHECK:
            return quality.Finding(True, f"{window} is kept as it was ({horizon.gone}): not compared")
        return queries[name](conn, level, [window])

    return {name: [(w, finding(name, w)) for w in windows] for name in queries if name in names}


def combined_result(asset: dg.AssetKey, check_name: str, findings: Findings) -> dg.AssetCheckResult:
    """One evaluation over the windows of a check launched on its own.

    One window: its finding and its numbers, as in a partitioned run. Several: how
    many windows were checked and how many failed, with the first failures quoted.
    """
    if not findings:
        return check_result(
            quality.Finding(True, "no materialized window in the lookback: nothing to check"),
            check_name,
            asset,
            windows_checked=0,
        )
    windows = [w for w, _ in findings]
    if len(findings) == 1:
        return check_result(findings[0][1], check_name, asset, windows=window_text(windows))
    failing = [(w, f) for w, f in findings if not f.passed]
    if not failing:
        text = f"all {len(findings)} windows of {window_text(windows)} passed"
    else:
        quoted = "; ".join(f"{w.key}: {f.description}" for w, f in failing[:FAILURES_SHOWN])
        more = f"; … and {len(failing) - FAILURES_SHOWN} more" if len(failing) > FAILURES_SHOWN else ""
        text = f"{len(failing)} of {len(findings)} windows of {window_text(windows)} fail: {quoted}{more}"
    examples = [e for _, f in failing[:FAILURES_SHOWN] for e in f.examples]
    return check_result(
        quality.Finding(
            not failing, text, {"windows_checked": len(findings), "failing_windows": len(failing)}, examples
        ),
        check_name,
        asset,
        windows=window_text(windows),
    )


def _build_window_checks(level: Level, period: Period) -> dg.AssetChecksDefinition:
    """Both after-write checks of one aggregate asset, in one op that runs either or both."""
    asset = dg.AssetKey(level.asset_name(period))
    specs = [
        dg.AssetCheckSpec(
            DATA_COUNT_CHECK,
            asset=asset,
            description=(
                f"Every row's data_count equals the {level.counted} of {level.raw.name} in its window "
                "(fails when raw data changed after the aggregate was written). Execute it on its "
                "own to check the recent windows, or a window chosen in the launchpad (windows)."
            ),
        ),
        dg.AssetCheckSpec(
            coverage_check_name(level),
            asset=asset,
            description=(
                f"Every {level.name} with {level.raw.name} rows in a window has exactly one row for "
                "that window, and no row exists without raw data. Execute it on its own to check "
                "the recent windows, or a window chosen in the launchpad (windows)."
            ),
        ),
        dg.AssetCheckSpec(
            HISTORY_CHECK,
            asset=asset,
            description=(
                f"Each window was computed from complete {level.raw.name} rows. WARN when a window "
                "was kept exactly as it was because the raw data of the window, or of the window "
                "before, is gone (the raw table's horizon): nothing was lost, but it was not recomputed."
            ),
        ),
    ]

    # can_subset: each check can be executed on its own (Dagster's canExecuteIndividually).
    @dg.multi_asset_check(specs=specs, name=f"{asset.to_python_identifier()}_consistency", can_subset=True)
    def _checks(
        context: dg.AssetCheckExecutionContext, db: AppDatabase, config: WindowCheckConfig
    ) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
        selected = {key.name for key in context.selected_asset_check_keys}
        partitioned = context.has_partition_key or context.has_partition_key_range
        with db.engine.connect() as conn:
            if partitioned:
                key_range = context.partition_key_range
                windows = windows_between(period, key_range.start, key_range.end)
            else:
                windows = _chosen_windows(conn, level, period, config)
            found = _findings(conn, level, selected, windows)
        for name, findings in found.items():
            if not partitioned:
                yield combined_result(asset, name, findings)
                continue
            for window, finding in findings:
                yield partition_evaluation(asset, name, window, finding, False, windows=window_text([window]))

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
            f"enforce the same rules on the rows they read (raw_rows_valid, blocking)."
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
