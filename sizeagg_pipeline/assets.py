"""The raw tables and the eight partitioned aggregate assets.

Each aggregate asset is a thin wrapper: it turns its run's partition (or range)
into period windows and calls `core.aggregation`, which does all the work in SQL.
"""

import warnings
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from . import checks, lineage
from .core import aggregation, charts, schema
from .core.aggregation import DATABASE, LEVELS, Level, WriteResult
from .core.periods import PERIODS, Period
from .core.settings import database_url
from .partitions import PARTITIONS, context_windows
from .resources import AppDatabase

OWNERS = ["team:dba-platform"]
PREVIEW_ROWS = 10


def engine_kind() -> str:
    """Kind tag of the configured application database (an icon in the UI)."""
    return "postgres" if sa.make_url(database_url()).get_backend_name() == "postgresql" else "sqlite"


KINDS = {"sql", engine_kind()}

database_size_stats = dg.AssetSpec(
    "database_size_stats",
    description=(
        "Raw daily size of every database on every monitored instance, written by the "
        "platform's collector (one row per instance, database and collected_date)."
    ),
    group_name="raw",
    owners=OWNERS,
    kinds=KINDS,
    metadata=lineage.raw_metadata(schema.database_size_stats),
)
instance_size_stats = dg.AssetSpec(
    "instance_size_stats",
    description=(
        "Raw daily total size and database count of every monitored instance, written "
        "by the collector (one non-deleted row per instance and collected_date)."
    ),
    group_name="raw",
    owners=OWNERS,
    kinds=KINDS,
    metadata=lineage.raw_metadata(schema.instance_size_stats),
)
RAW_ASSETS = {"database": database_size_stats, "instance": instance_size_stats}

_PERIOD_TEXT = {
    Period.DAILY: "one business day",
    Period.WEEKLY: "one ISO week (Monday to Sunday)",
    Period.MONTHLY: "one calendar month",
    Period.QUARTERLY: "one calendar quarter",
}


def _preview(engine: sa.Engine, level: Level, result: WriteResult) -> str:
    table = level.target
    key = [table.c[k] for k in level.keys]
    shown = [*key, table.c.period_start, *list(table.c)[5 : 5 + 6]]
    query = (
        sa.select(*shown)
        .where(
            table.c.period_type == result.period.value,
            table.c.period_start.between(result.first.start, result.last.start),
        )
        .order_by(table.c.period_start, *key)
        .limit(PREVIEW_ROWS)
    )
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    return frame.to_markdown(index=False) if len(frame) else "_no rows: no raw data in the window_"


LINEAGE = {DATABASE.name: lineage.DATABASE_LINEAGE, "instance": lineage.INSTANCE_LINEAGE}
CHARTED = (Period.WEEKLY, Period.MONTHLY)


def _definition_metadata(level: Level, period: Period) -> dict[str, object]:
    return {
        **lineage.aggregate_metadata(level.target, LINEAGE[level.name], level.raw),
        "period_type": period.value,
    }


def _growth_metadata(engine: sa.Engine, level: Level, result: WriteResult) -> dict[str, object]:
    """Weekly and monthly: chart and table of the top growers over the last 12 periods."""
    with engine.connect() as conn:
        report = charts.growth_report(conn, level, result.period, result.last.start)
    return {
        "top_growth_chart": dg.MetadataValue.md(charts.chart_markdown(report)),
        "top_growth_table": dg.MetadataValue.md(charts.table_markdown(report)),
    }


def _metadata(engine: sa.Engine, level: Level, result: WriteResult) -> dict[str, object]:
    return {
        "dagster/row_count": result.rows,
        "rows_inserted": result.inserted,
        "rows_updated": result.updated,
        "rows_deleted": result.deleted,
        "instances_covered": result.instances,
        "window": result.window_text,
        "partitions": f"{result.first.key}...{result.last.key}",
        "preview": dg.MetadataValue.md(_preview(engine, level, result)),
        # Materialization metadata too: the UI's column-lineage view reads the latest event.
        "dagster/column_lineage": lineage.aggregate_lineage(LINEAGE[level.name], level.raw),
        **(_growth_metadata(engine, level, result) if result.period in CHARTED else {}),
    }


def build_period_asset(level: Level, period: Period) -> dg.AssetsDefinition:
    raw = RAW_ASSETS[level.name]
    with warnings.catch_warnings():
        # single_run backfills are "beta" in 1.13 and the point of these assets.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build_period_asset(level, period, raw)


def _build_period_asset(level: Level, period: Period, raw: dg.AssetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        name=level.asset_name(period),
        description=(
            f"{level.name.capitalize()}-level {period} aggregates of {raw.key.to_user_string()}: "
            f"one row per {' and '.join(level.keys)} with raw rows in {_PERIOD_TEXT[period]}, "
            f"compared with the previous {period} window, in {level.target.name}. "
            "Re-running a partition rewrites exactly its slice."
        ),
        partitions_def=PARTITIONS[period],
        deps=[raw],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="aggregates",
        owners=OWNERS,
        kinds=KINDS,
        pool="app_db",
        metadata=_definition_metadata(level, period),
        check_specs=[checks.raw_check_spec(level, period)],
    )
    def _asset(
        context: dg.AssetExecutionContext, db: AppDatabase
    ) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult]:
        windows = context_windows(context, period)
        try:
            result = aggregation.aggregate(db.engine, level, windows)
        except aggregation.InvalidRawData as exc:
            # The blocking check fails; the write rolled back, nothing of the partition exists.
            yield checks.raw_check_result(level, windows, exc.violations)
            raise dg.Failure(description=str(exc)) from exc
        yield checks.raw_check_result(level, windows, None)
        context.log.info(
            f"{level.target.name} {period} {result.window_text}: {result.inserted} inserted, "
            f"{result.updated} updated, {result.deleted} deleted, {result.instances} instances"
        )
        yield dg.MaterializeResult(metadata=_metadata(db.engine, level, result))

    return _asset


PERIOD_ASSETS: dict[tuple[str, Period], dg.AssetsDefinition] = {
    (level.name, period): build_period_asset(level, period) for level in LEVELS for period in PERIODS
}


def assets_of(period: Period) -> list[dg.AssetsDefinition]:
    return [PERIOD_ASSETS[(level.name, period)] for level in LEVELS]
