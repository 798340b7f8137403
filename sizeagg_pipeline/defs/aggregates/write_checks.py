"""``raw_rows_valid``, the check an aggregate's write emits itself (blocking).

The write's own validation of exactly the raw rows it reads (its windows and the
window before), reported as a check. A failure stops that partition, nothing
written, with the rule, table and rows named. It is attached to the aggregates
rather than to the raw assets so it gates the write whatever the raw assets become.
Dagster plans it once per partition of a run, so it is evaluated per window
(checks.py says why), then its output is yielded once.
"""

from collections.abc import Iterator, Sequence
from datetime import date

import dagster as dg
import sqlalchemy as sa

from ...core import quality
from ...core.aggregation import Violations, WriteResult, find_violations
from ...core.levels import Level
from ...core.periods import Period, Window, span_text
from .checks import partition_evaluation, window_text

RAW_CHECK = "raw_rows_valid"


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


def _kept(result: WriteResult | None, window: Window) -> bool:
    return result is not None and result.kept is not None and window.start <= result.kept.last.start


def raw_evaluations(
    context: dg.AssetExecutionContext,
    engine: sa.Engine,
    level: Level,
    windows: Sequence[Window],
    violations: Violations | None,
    result: WriteResult | None = None,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """`raw_rows_valid` per partition, as the write's own validation found it.

    `violations` is None when the write validated its rows and went ahead (`result`):
    no second scan of the raw rows. When a range failed, nothing of it was written;
    each window is then judged on its own rows (the failure path only), so a window
    whose rows are valid says which window stopped the range.
    """
    asset = context.assets_def.key
    for window in windows:
        first, last = window.previous().start, window.end
        where = f"collected_date {span_text(first, last)}"
        if _kept(result, window):
            assert result is not None and result.kept is not None
            finding = quality.Finding(
                True, f"the write of {window} read no {level.raw.name} rows: {result.kept.gone}"
            )
        elif violations is None:
            finding = quality.Finding(
                True,
                f"the {level.raw.name} rows the write of {window} read ({where}) have no negative "
                "or NULL sizes and no unknown instance_id",
            )
        else:
            own = violations if len(windows) == 1 else _window_violations(engine, level, first, last)
            finding = quality.raw_finding(own, where)
            if finding.passed:
                finding = quality.Finding(
                    True,
                    f"{finding.description}; not written: the write of {window_text(windows)} is one "
                    f"transaction and stopped at invalid rows ({violations.describe()})",
                    finding.counts,
                )
        yield partition_evaluation(
            asset, RAW_CHECK, window, finding, True, collected_dates=span_text(first, last)
        )
    # Dagster expects the check's output once, whatever the evaluations say.
    key = dg.AssetCheckKey(asset, RAW_CHECK)
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))


def _window_violations(engine: sa.Engine, level: Level, first: date, last: date) -> Violations:
    with engine.connect() as conn:
        return find_violations(conn, level, first, last)
