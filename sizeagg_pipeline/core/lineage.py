"""Where each written column comes from: its raw columns and a one-line formula.

Plain data, free of Dagster: `core.levels` gives each level its map, and
`defs/aggregates/lineage.py` turns the maps into the UI's table schemas and column
lineage. A test asserts that every column of every written table is mapped here,
so a new column cannot silently lack lineage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# written column -> (source columns it is computed from, what it is)
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
# roles, resolved to both daily aggregate assets in defs/forecast/asset.py: "size" is
# avg_size_mb of a database's daily row, total_size_mb of an instance's.
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


def column_descriptions(lineage: Lineage, source: str | None = None) -> dict[str, str]:
    """Column descriptions: the formula, and the source columns when `source` is named."""
    result = {}
    for name, (columns, text) in lineage.items():
        result[name] = f"{text} (from {source}.{', '.join(columns)})" if columns and source else text
    return result
