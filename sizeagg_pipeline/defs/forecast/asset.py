"""`capacity_forecast`: per database and per instance, where is the size heading?

Daily-partitioned like its upstreams: partition D writes the forecasts `as_of = D`,
fitted on the daily aggregates of the `window_days` days up to D. A range (backfill)
is one run and one transaction; the math is `core/forecast.py` (vectorized numpy).
"""

import warnings
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from ...core import forecast, limits
from ...core.alerts import Severity
from ...core.charts import markdown_table
from ...core.levels import DATABASE, INSTANCE
from ...core.lineage import FORECAST_LINEAGE, column_descriptions
from ...core.periods import Period
from ...core.schema import capacity_forecasts, instances
from ...dagster_private import Metadata
from ..aggregates.assets import AGGREGATE_ASSETS, APP_DB_POOL, KINDS, OWNERS
from ..aggregates.lineage import Sources, column_lineage, table_schema
from ..aggregates.partitions import PARTITIONS, context_windows
from ..resources import AppDatabase

DATABASE_DAILY = AGGREGATE_ASSETS[(DATABASE, Period.DAILY)]
INSTANCE_DAILY = AGGREGATE_ASSETS[(INSTANCE, Period.DAILY)]
FLAGGED_SHOWN = 25

FORECAST_SOURCES: Sources = {
    "instance_id": [(DATABASE_DAILY.key, "instance_id"), (INSTANCE_DAILY.key, "instance_id")],
    "database_name": [(DATABASE_DAILY.key, "database_name")],
    "size": [(DATABASE_DAILY.key, DATABASE.size_column), (INSTANCE_DAILY.key, INSTANCE.size_column)],
    "day": [(DATABASE_DAILY.key, "period_start"), (INSTANCE_DAILY.key, "period_start")],
}
COLUMN_LINEAGE = column_lineage(FORECAST_LINEAGE, FORECAST_SOURCES)
_DEFAULTS = forecast.ForecastSettings()


class ForecastConfig(dg.Config):
    window_days: int = Field(default=_DEFAULTS.window_days, description="days of history fitted")
    min_points: int = Field(
        default=_DEFAULTS.min_points, description="fewer days with data in the window: no forecast"
    )
    database_threshold_mb: int = Field(
        default=_DEFAULTS.database_threshold_mb, description="capacity threshold of one database, MB"
    )
    instance_threshold_mb: int = Field(
        default=_DEFAULTS.instance_threshold_mb, description="capacity threshold of one instance's total, MB"
    )
    flag_within_days: int = Field(
        default=_DEFAULTS.flag_within_days, description="flag series projected to reach it within this"
    )
    critical_used_percent: float = Field(
        default=_DEFAULTS.critical_used_percent, description="critical: this much of the capacity limit used"
    )
    critical_within_days: int = Field(
        default=_DEFAULTS.critical_within_days,
        description="critical: the limit reached within this many days",
    )
    warning_used_percent: float = Field(
        default=_DEFAULTS.warning_used_percent, description="warning: this much of the capacity limit used"
    )
    warning_within_days: int = Field(
        default=_DEFAULTS.warning_within_days,
        description="warning: the limit reached within this many days (the warning horizon)",
    )
    interval_percent: int = Field(
        default=_DEFAULTS.interval_percent, description="confidence of the interval around the limit's day"
    )

    def settings(self) -> forecast.ForecastSettings:
        return forecast.ForecastSettings(**self.model_dump())


def forecast_days(engine: sa.Engine, days: list[date], settings: forecast.ForecastSettings) -> pd.DataFrame:
    """Forecasts for every as_of day in `days`: one read, one vectorized fit per day."""
    first = days[0] - timedelta(days=settings.window_days - 1)
    with engine.connect() as conn:
        samples = forecast.read_daily_sizes(conn, first, days[-1])
        by_series = limits.read(conn)
    is_instance = samples["database_name"].isna()
    frames = []
    for as_of in days:  # a handful of partitions, not history: each day is one array fit
        for subset, threshold in (
            (samples[~is_instance], settings.database_threshold_mb),
            (samples[is_instance], settings.instance_threshold_mb),
        ):
            frames.append(forecast.forecast_frame(subset, as_of, settings, threshold, by_series))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=forecast.forecast_frame(samples.iloc[:0], days[0], settings, 0).columns)
    return pd.concat(frames, ignore_index=True)


def _names(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {row.id: row.name for row in conn.execute(sa.select(instances.c.id, instances.c.name))}


def _flagged_markdown(flagged: pd.DataFrame, names: dict[int, str], empty: str) -> str:
    """The flagged series in the four columns that fit the asset page's side panel.

    The other columns (threshold, R², projections) are in capacity_forecasts, which
    the note under the table names with the as_of day to filter on.
    """
    if flagged.empty:
        return f"_{empty}_"
    instance = flagged["instance_id"].map(lambda i: names.get(i, f"#{i}"))
    shown = pd.DataFrame(
        {
            "instance / database": instance
            + flagged["database_name"].map(lambda d: "" if pd.isna(d) else f" / {d}"),
            "days left": flagged["days_until_threshold"],
            "size MB": flagged["fitted_size_mb"],
            "MB/day": flagged["slope_mb_per_day"].round(1),
        }
    ).head(FLAGGED_SHOWN)
    more = f"{len(flagged) - FLAGGED_SHOWN} more, and " if len(flagged) > FLAGGED_SHOWN else ""
    as_of = flagged["as_of"].max()
    return (
        markdown_table(shown)
        + f"\n\nAn instance alone is its total. Size is the fitted trend as of {as_of}; {more}every "
        f"column (threshold, R², 30/90/180-day projections): table capacity_forecasts, as_of = {as_of}."
    )


def _limits_markdown(latest: pd.DataFrame, names: dict[int, str]) -> str:
    """Series with a capacity limit that are not `normal`: the most severe, then the soonest, first."""
    limited = latest[latest["limit_mb"].notna() & latest["severity"].ne(Severity.NORMAL.value)]
    if limited.empty:
        return "_no series with a capacity limit is at warning or critical_"
    rank = limited["severity"].map(lambda s: -Severity(s).rank)
    ordered = limited.assign(_rank=rank).sort_values(["_rank", "days_until_limit", "used_percent"])
    instance = ordered["instance_id"].map(lambda i: names.get(i, f"#{i}"))
    days = [
        f"{left} ({_interval_text(low, high)})"
        for left, low, high in zip(
            ordered["days_until_limit"],
            ordered["days_until_limit_low"],
            ordered["days_until_limit_high"],
            strict=True,
        )
    ]
    shown = pd.DataFrame(
        {
            "severity": ordered["severity"],
            "instance / database": instance
            + ordered["database_name"].map(lambda d: "" if pd.isna(d) else f" / {d}"),
            "used %": ordered["used_percent"],
            f"days to limit ({ordered['interval_percent'].iloc[0]} %)": days,
        }
    ).head(FLAGGED_SHOWN)
    more = f"{len(ordered) - FLAGGED_SHOWN} more, and " if len(ordered) > FLAGGED_SHOWN else ""
    return (
        markdown_table(shown)
        + f"\n\nAn instance alone is its total. {more}every column (limit MB, interval bounds): "
        "table capacity_limit_forecasts."
    )


def _interval_text(low: Any, high: Any) -> str:
    if pd.isna(low):
        return "not in sight"
    return f"{low}–{high}" if not pd.isna(high) else f"{low}–(open)"


def _metadata(frame: pd.DataFrame, settings: forecast.ForecastSettings, names: dict[int, str]) -> Metadata:
    latest = frame[frame["as_of"] == frame["as_of"].max()] if len(frame) else frame
    flagged = forecast.crossing_soon(latest, settings.flag_within_days)
    over = latest[latest["days_until_threshold"].eq(0).fillna(False)] if len(latest) else latest
    is_db = latest["database_name"].notna() if len(latest) else pd.Series(dtype=bool)
    return {
        "dagster/row_count": len(frame),
        "databases_forecast": int(is_db.sum()),
        "instances_forecast": int((~is_db).sum()),
        "flagged_within_days": settings.flag_within_days,
        "flagged_databases": int(flagged["database_name"].notna().sum()),
        "flagged_instances": int(flagged["database_name"].isna().sum()),
        "already_over_threshold": len(over),
        "critical_series": int(latest["severity"].eq(Severity.CRITICAL.value).sum()),
        "warning_series": int(latest["severity"].eq(Severity.WARNING.value).sum()),
        "capacity_limits": dg.MetadataValue.md(_limits_markdown(latest, names)),
        "flagged": dg.MetadataValue.md(
            _flagged_markdown(
                flagged,
                names,
                f"nothing is projected to reach its threshold within {settings.flag_within_days} days",
            )
        ),
        "over_threshold": dg.MetadataValue.md(
            _flagged_markdown(over, names, "nothing is over its threshold already")
        ),
        "window_days": settings.window_days,
        "min_points": settings.min_points,
        "database_threshold_mb": settings.database_threshold_mb,
        "instance_threshold_mb": settings.instance_threshold_mb,
        "method": forecast.METHOD,
        "dagster/column_lineage": COLUMN_LINEAGE,
    }


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # single_run backfills are beta in 1.13

    @dg.asset(
        deps=[DATABASE_DAILY, INSTANCE_DAILY],
        partitions_def=PARTITIONS[Period.DAILY],
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            "Capacity forecast per database and per instance as of each day: a robust linear "
            "trend (Theil–Sen start, bisquare IRLS) over the last window_days days of daily "
            "aggregates (days without data ignored), projected 30/90/180 days ahead, with the "
            "days until a configurable threshold, in capacity_forecasts; against each capacity "
            "limit (sizeagg limits) the days until it is reached, with an interval, and a severity "
            "normal/warning/critical, in capacity_limit_forecasts. Metadata flags what is "
            "projected to cross its threshold within 30 days and what is near its limit."
        ),
        group_name="aggregates",
        owners=OWNERS,
        kinds=KINDS,
        pool=APP_DB_POOL,
        metadata={
            "dagster/table_name": capacity_forecasts.name,
            "dagster/column_schema": table_schema(capacity_forecasts, column_descriptions(FORECAST_LINEAGE)),
            "dagster/column_lineage": COLUMN_LINEAGE,
        },
    )
    def capacity_forecast(
        context: dg.AssetExecutionContext, db: AppDatabase, config: ForecastConfig
    ) -> dg.MaterializeResult:
        settings = config.settings()
        days = [w.start for w in context_windows(context, Period.DAILY)]
        frame = forecast_days(db.engine, days, settings)
        with db.engine.begin() as conn:
            written = forecast.write_forecasts(conn, frame, days[0], days[-1], datetime.now(UTC))
        context.log.info(f"capacity_forecasts {days[0]}..{days[-1]}: {written} rows")
        return dg.MaterializeResult(metadata=_metadata(frame, settings, _names(db.engine)))
