"""The raw tables and the eight partitioned aggregate assets (one per level and period).

Each aggregate asset is a thin wrapper: it turns its run's partition (or range) into
period windows and calls `core.aggregation`, which does all the work in SQL.
"""

import warnings
from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa

from ...core import aggregation
from ...core.levels import LEVELS, Level
from ...core.periods import PERIODS, Period
from ...core.settings import database_url
from ..resources import AppDatabase
from .lineage import aggregate_metadata, raw_metadata
from .metadata import materialization_metadata
from .partitions import PARTITIONS, context_windows
from .write_checks import raw_check_spec, raw_evaluations

OWNERS = ["team:dba-platform"]
APP_DB_POOL = "app_db"  # concurrency pool of every step that writes the application database
# The kind tag of the configured application database (an icon in the UI).
KINDS = {"sql", "postgres" if sa.make_url(database_url()).get_backend_name() == "postgresql" else "sqlite"}

RAW_ASSETS: dict[Level, dg.AssetSpec] = {
    level: dg.AssetSpec(
        level.raw.name,
        description=level.raw_description,
        group_name="raw",
        owners=OWNERS,
        kinds=KINDS,
        metadata=raw_metadata(level.raw),
    )
    for level in LEVELS
}

_PERIOD_TEXT = {
    Period.DAILY: "one business day",
    Period.WEEKLY: "one ISO week (Monday to Sunday)",
    Period.MONTHLY: "one calendar month",
    Period.QUARTERLY: "one calendar quarter",
}


def _build_aggregate(level: Level, period: Period) -> dg.AssetsDefinition:
    raw = RAW_ASSETS[level]

    @dg.asset(
        name=level.asset_name(period),
        description=(
            f"{level.label}-level {period} aggregates of {raw.key.to_user_string()}: "
            f"one row per {' and '.join(level.keys)} with raw rows in {_PERIOD_TEXT[period]}, "
            f"compared with the previous {period} window, in {level.target.name}. "
            "Re-running a partition rewrites exactly its slice; a slice whose raw data (or the "
            "previous window's) is gone is kept as it is."
        ),
        partitions_def=PARTITIONS[period],
        deps=[raw],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="aggregates",
        owners=OWNERS,
        kinds=KINDS,
        pool=APP_DB_POOL,
        metadata={**aggregate_metadata(level), "period_type": period.value},
        check_specs=[raw_check_spec(level, period)],
    )
    def _asset(
        context: dg.AssetExecutionContext, db: AppDatabase
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output | dg.MaterializeResult]:
        windows = context_windows(context, period)
        try:
            result = aggregation.aggregate(db.engine, level, windows)
        except aggregation.InvalidRawData as exc:
            # The blocking check fails; the write rolled back, nothing of the partition exists.
            yield from raw_evaluations(context, db.engine, level, windows, exc.violations)
            raise dg.Failure(description=str(exc)) from exc
        yield from raw_evaluations(context, db.engine, level, windows, None, result)
        context.log.info(
            f"{level.target.name} {period} {result.window_text}: {result.inserted} inserted, "
            f"{result.updated} updated, {result.deleted} deleted, {result.instances} instances"
        )
        if result.kept is not None:
            context.log.warning(str(result.kept))
        yield dg.MaterializeResult(metadata=materialization_metadata(db.engine, level, result))

    return _asset


with warnings.catch_warnings():
    # single_run backfills are "beta" in 1.13 and the point of these assets.
    warnings.simplefilter("ignore", dg.BetaWarning)
    AGGREGATE_ASSETS: dict[tuple[Level, Period], dg.AssetsDefinition] = {
        (level, period): _build_aggregate(level, period) for level in LEVELS for period in PERIODS
    }

# Module-level lists are what `load_from_defs_folder` collects (it skips dicts).
raw_assets = list(RAW_ASSETS.values())
aggregate_assets = list(AGGREGATE_ASSETS.values())

# What each aggregate asset is, by key: how a run's asset selection is read (never by its name).
AGGREGATE_KEYS: dict[dg.AssetKey, tuple[Level, Period]] = {
    asset.key: level_period for level_period, asset in AGGREGATE_ASSETS.items()
}


def assets_of(period: Period) -> list[dg.AssetsDefinition]:
    return [AGGREGATE_ASSETS[(level, period)] for level in LEVELS]
