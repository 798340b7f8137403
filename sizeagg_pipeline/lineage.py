"""Table schemas and column lineage for the UI, derived from `core.schema`.

Column names, types and nullability come from the SQLAlchemy tables, so the schema
is written down once. What this module adds is *where each aggregate column comes
from*: the raw columns that feed it and a one-line formula (contract §3). A test
asserts that every column of every written table is mapped here, so a new column
cannot silently lack lineage.
"""

from collections.abc import Mapping, Sequence

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from .core import schema

# aggregate column -> (raw columns it is computed from, what it is)
Lineage = Mapping[str, tuple[Sequence[str], str]]

_TIMESTAMPS: Lineage = {
    "id": ((), "surrogate key"),
    "calculated_at": ((), "when this row was last computed (UTC)"),
    "created_at": ((), "when this row was first written (UTC)"),
}

DATABASE_LINEAGE: Lineage = {
    **_TIMESTAMPS,
    "instance_id": (("instance_id",), "the instance"),
    "database_name": (("database_name",), "the database"),
    "period_type": ((), "daily, weekly, monthly or quarterly"),
    "period_start": (("collected_date",), "first day of the window"),
    "period_end": (("collected_date",), "last day of the window"),
    "avg_size_mb": (("size_mb",), "floor(mean size_mb) in the window"),
    "max_size_mb": (("size_mb",), "max size_mb in the window"),
    "min_size_mb": (("size_mb",), "min size_mb in the window"),
    "data_count": (("collected_date",), "raw rows in the window"),
    "avg_data_size_mb": (("data_size_mb",), "floor(mean data_size_mb), NULLs ignored"),
    "max_data_size_mb": (("data_size_mb",), "max data_size_mb"),
    "min_data_size_mb": (("data_size_mb",), "min data_size_mb"),
    "avg_log_size_mb": (("log_size_mb",), "floor(mean log_size_mb), NULLs ignored"),
    "max_log_size_mb": (("log_size_mb",), "max log_size_mb"),
    "min_log_size_mb": (("log_size_mb",), "min log_size_mb"),
    "size_change_mb": (("size_mb", "collected_date"), "trunc(mean size_mb − previous window's mean)"),
    "size_change_percent": (("size_mb", "collected_date"), "round2(change / previous mean × 100)"),
    "data_size_change_mb": (("data_size_mb", "collected_date"), "change of mean data_size_mb"),
    "data_size_change_percent": (("data_size_mb", "collected_date"), "change of mean data_size_mb, %"),
    "log_size_change_mb": (("log_size_mb", "collected_date"), "change of mean log_size_mb"),
    "log_size_change_percent": (("log_size_mb", "collected_date"), "change of mean log_size_mb, %"),
    "growth_rate": (("size_mb", "collected_date"), "= size_change_percent"),
}

INSTANCE_LINEAGE: Lineage = {
    **_TIMESTAMPS,
    "instance_id": (("instance_id",), "the instance"),
    "period_type": ((), "daily, weekly, monthly or quarterly"),
    "period_start": (("collected_date",), "first day of the window"),
    "period_end": (("collected_date",), "last day of the window"),
    "total_size_mb": (("total_size_mb",), "floor(mean total_size_mb) over the days"),
    "avg_size_mb": (("total_size_mb", "database_count"), "floor(Σ total_size_mb / Σ database_count)"),
    "max_size_mb": (("total_size_mb",), "max total_size_mb"),
    "min_size_mb": (("total_size_mb",), "min total_size_mb"),
    "data_count": (("collected_date",), "days with a non-deleted row"),
    "database_count": (("database_count",), "floor(mean database_count)"),
    "avg_database_count": (("database_count",), "round2(mean database_count)"),
    "max_database_count": (("database_count",), "max database_count"),
    "min_database_count": (("database_count",), "min database_count"),
    "total_size_change_mb": (("total_size_mb", "collected_date"), "trunc(mean total − previous mean)"),
    "total_size_change_percent": (("total_size_mb", "collected_date"), "round2(change / previous × 100)"),
    "database_count_change": (("database_count", "collected_date"), "trunc(mean count − previous)"),
    "database_count_change_percent": (("database_count", "collected_date"), "change of mean count, %"),
    "growth_rate": (("total_size_mb", "collected_date"), "= total_size_change_percent"),
    "trend_direction": (("total_size_mb", "collected_date"), "growing > 5 %, shrinking < −5 %, else stable"),
}

# capacity_forecasts column -> (what it is fitted from, what it is). The sources are
# roles, resolved to both daily aggregate assets by FORECAST_SOURCES in forecast.py:
# "size" is avg_size_mb of a database's daily row, total_size_mb of an instance's.
_FIT = ("size", "day")
FORECAST_LINEAGE: Lineage = {
    **_TIMESTAMPS,
    "instance_id": (("instance_id",), "the instance"),
    "database_name": (("database_name",), "the database; NULL on the instance's own row"),
    "as_of": ((), "the day the forecast is made for (its partition)"),
    "window_days": ((), "days of history the fit may use"),
    "sample_days": (("day",), "days with data in the window"),
    "first_day": (("day",), "first day with data in the window"),
    "last_day": (("day",), "last day with data in the window"),
    "last_size_mb": (("size",), "size on last_day"),
    "fitted_size_mb": (_FIT, "size on the fitted line at as_of"),
    "slope_mb_per_day": (_FIT, "robust linear trend, MB per day"),
    "projected_30d_mb": (_FIT, "fitted size at as_of + 30 days (never below 0)"),
    "projected_90d_mb": (_FIT, "fitted size at as_of + 90 days"),
    "projected_180d_mb": (_FIT, "fitted size at as_of + 180 days"),
    "threshold_mb": ((), "the configured capacity threshold"),
    "days_until_threshold": (_FIT, "days until the fitted line reaches threshold_mb; NULL = not growing"),
    "r_squared": (_FIT, "weighted R² of the final fit; NULL for a constant series"),
    "residual_scale_mb": (_FIT, "robust scale of the residuals (MAD as σ)"),
    "outlier_days": (_FIT, "days the fit gave weight 0"),
    "method": ((), "estimator used"),
}

SESSION_DESCRIPTIONS = {
    "session_id": "UUID of the session",
    "sync_type": "manual_task or scheduled_task",
    "status": "running, completed, failed or cancelled",
    "total_instances": "active instances when the execution started",
    "successful_instances": "records completed",
    "failed_instances": "records failed",
}


def _type_name(column: sa.Column) -> str:
    # The origin's DDL is PostgreSQL: show its type names on every backend.
    return column.type.compile(dialect=postgresql.dialect()).lower()


def table_schema(table: sa.Table, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """The Dagster table schema of a SQLAlchemy table."""
    descriptions = descriptions or {}
    unique = {next(iter(c.columns)).name for c in table.constraints if len(c.columns) == 1} - {"id"}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=_type_name(column),
                description=descriptions.get(column.name),
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable) and not column.primary_key,
                    unique=column.primary_key or column.name in unique,
                ),
            )
            for column in table.columns
        ]
    )


def describe(lineage: Lineage, source: str | None = None) -> dict[str, str]:
    """Column descriptions: the formula, and the source columns when `source` is named."""
    result = {}
    for name, (columns, text) in lineage.items():
        result[name] = f"{text} (from {source}.{', '.join(columns)})" if columns and source else text
    return result


# source name in a Lineage -> the upstream (asset, column) pairs it stands for
Sources = Mapping[str, Sequence[tuple[dg.AssetKey, str]]]


def column_lineage(lineage: Lineage, sources: Sources) -> dg.TableColumnLineage:
    """`dagster/column_lineage`: each column's upstream (asset, column) pairs."""
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for name, (columns, _) in lineage.items():
        pairs = [
            dg.TableColumnDep(asset_key=key, column_name=column)
            for source in columns
            for key, column in sources.get(source, ())
        ]
        if pairs:
            deps[name] = pairs
    return dg.TableColumnLineage(deps_by_column=deps)


def raw_metadata(table: sa.Table) -> dict[str, object]:
    return {"dagster/table_name": table.name, "dagster/column_schema": table_schema(table)}


def aggregate_lineage(lineage: Lineage, raw: sa.Table) -> dg.TableColumnLineage:
    """Column lineage of an aggregate table from the raw table's asset (same name)."""
    key = dg.AssetKey(raw.name)
    return column_lineage(lineage, {c.name: [(key, c.name)] for c in raw.columns})


def aggregate_metadata(table: sa.Table, lineage: Lineage, raw: sa.Table) -> dict[str, object]:
    """Definition metadata of an aggregate asset: schema with formulas, and column lineage."""
    return {
        "dagster/table_name": table.name,
        "dagster/column_schema": table_schema(table, describe(lineage, raw.name)),
        "dagster/column_lineage": aggregate_lineage(lineage, raw),
    }


def session_metadata() -> dict[str, object]:
    return {
        "dagster/table_name": schema.sync_sessions.name,
        "dagster/column_schema": table_schema(schema.sync_sessions, SESSION_DESCRIPTIONS),
        "records_table": schema.sync_instance_records.name,
    }
