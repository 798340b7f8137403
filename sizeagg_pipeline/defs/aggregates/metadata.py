"""What the UI shows of a materialization (counts, a preview, growth leaders) and of a raw table's horizon."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from ...core import charts
from ...core.aggregation import WriteResult
from ...core.horizon import Horizon
from ...core.levels import Level
from ...core.periods import Period, span_text
from ...core.schema import instances
from ...dagster_private import Metadata
from .lineage import aggregate_lineage

PREVIEW_ROWS = 10
CHARTED = (Period.WEEKLY, Period.MONTHLY)  # periods whose assets chart their growth leaders


def _preview(engine: sa.Engine, level: Level, result: WriteResult) -> str:
    """The first rows of the slice, with instance names (the ids mean nothing to a DBA)."""
    table = level.target
    key = [table.c[k] for k in level.keys]
    named = [instances.c.name.label("instance"), *key[1:]]
    shown = [*named, table.c.period_start, *list(table.c)[5 : 5 + 6]]
    query = (
        sa.select(*shown)
        .select_from(table.outerjoin(instances, instances.c.id == table.c.instance_id))
        .where(
            table.c.period_type == result.period.value,
            table.c.period_start.between(result.first.start, result.last.start),
        )
        .order_by(table.c.period_start, *key)
        .limit(PREVIEW_ROWS)
    )
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    more = f"\n\nThe first {PREVIEW_ROWS} of {result.rows:,} rows; all of them: table {table.name}."
    return charts.markdown_table(frame) + more if len(frame) else "_no rows: no raw data in the window_"


def _growth(engine: sa.Engine, level: Level, result: WriteResult) -> Metadata:
    """Weekly and monthly: chart and table of the top growers over the last 12 periods."""
    if result.period not in CHARTED:
        return {}
    with engine.connect() as conn:
        report = charts.growth_report(conn, level, result.period, result.last.start)
    return {
        charts.chart_label(result.period): dg.MetadataValue.md(charts.chart_markdown(report)),
        charts.table_label(result.period): dg.MetadataValue.md(charts.table_markdown(report)),
    }


def _kept(result: WriteResult) -> Metadata:
    """The slices the write kept as they were (core/horizon.py), when there are any."""
    kept = result.kept
    if kept is None:
        return {}
    return {"kept": str(kept), "kept_partitions": kept.partitions, "kept_rows": kept.rows}


def materialization_metadata(engine: sa.Engine, level: Level, result: WriteResult) -> Metadata:
    return {
        "dagster/row_count": result.rows,
        "rows_inserted": result.inserted,
        "rows_updated": result.updated,
        "rows_deleted": result.deleted,
        "instances_covered": result.instances,
        "window": result.window_text,
        "partitions": span_text(result.first.key, result.last.key),
        "preview": dg.MetadataValue.md(_preview(engine, level, result)),
        # Materialization metadata too: the UI's column-lineage view reads the latest event.
        "dagster/column_lineage": aggregate_lineage(level),
        **_kept(result),
        **_growth(engine, level, result),
    }


def horizon_metadata(horizon: Horizon) -> Metadata:
    """A raw table's horizon, as the observations of its raw asset show it (core/horizon.py)."""
    return {
        "horizon": horizon.text(),
        "earliest_raw_day": str(horizon.earliest_raw_day or "none"),
        "kept_before_horizon": horizon.gone,
        "why": horizon.why,
    }
