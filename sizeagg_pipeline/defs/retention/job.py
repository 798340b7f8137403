"""`retention_job`: drop old raw rows and old daily/weekly aggregates as the settings say.

The work is `core/retention.py`; this op reads the settings when it starts (a bad
one fails the run before anything is deleted), reports what went, what stayed and
why as the run's metadata, and tells the raw assets their new horizon (and the
daily/weekly aggregate assets what left them) as observations the UI shows.
A raw month it refused fails the run, naming the month and the partitions to
materialize first. Run it on demand with
`dagster job execute -m sizeagg_pipeline -j retention_job`; it also runs monthly.
"""

import dagster as dg

from ...core import retention
from ...core.levels import LEVELS, level_named
from ...core.periods import Period
from ...core.settings import Retention, utc_now
from ...core.settings import retention as retention_settings
from ...dagster_private import Metadata
from ..aggregates.assets import APP_DB_POOL
from ..aggregates.metadata import horizon_metadata
from ..aggregates.partitions import CALENDAR
from ..resources import AppDatabase


def _settings_text(settings: Retention) -> str:
    parts = (
        ("raw", settings.raw_months),
        ("daily", settings.daily_months),
        ("weekly", settings.weekly_months),
    )
    return ", ".join(f"{name} {f'{months} months' if months else 'off'}" for name, months in parts)


def _bullets(lines: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- {line}" for line in lines) or "_nothing_")


def run_metadata(report: retention.RetentionReport) -> Metadata:
    return {
        "today": str(report.today),
        "settings": _settings_text(report.settings),
        "rows_dropped": sum(d.total for d in report.dropped),
        "dropped": _bullets([str(d) for d in report.dropped]),
        "kept": _bullets(report.kept()),
        "horizons": _bullets(
            [f"{level_named(name).raw.name}: {h.text()} ({h.why})" for name, h in report.horizons.items()]
        ),
    }


def observations(report: retention.RetentionReport) -> list[dg.AssetObservation]:
    """The raw assets' new horizons, and the rows that left each daily or weekly aggregate asset."""
    events = []
    for level in LEVELS:
        plan = next((p for p in report.raw if p.level is level), None)
        metadata = horizon_metadata(report.horizons[level.name])
        dropped = [str(d) for d in report.dropped if d.table == level.raw.name]
        metadata["retention"] = "; ".join(dropped) or "nothing dropped"
        if plan is not None and plan.refusal is not None:
            metadata["retention_refused"] = str(plan.refusal)
        events.append(dg.AssetObservation(asset_key=level.raw.name, metadata=metadata))
        for period in (Period.DAILY, Period.WEEKLY):
            for d in report.dropped:
                if d.table == f"{level.target.name} {period}":
                    events.append(
                        dg.AssetObservation(
                            asset_key=level.asset_name(period),
                            metadata={"rows_dropped": d.rows, "dropped_before": str(d.before)},
                        )
                    )
    return events


@dg.op(
    description=(
        "Drops raw rows older than SIZEAGG_RAW_RETENTION_MONTHS (only months whose daily, weekly, "
        "monthly and quarterly partitions summarise them; PostgreSQL month partitions are detached "
        "concurrently and dropped), daily aggregates older than SIZEAGG_DAILY_RETENTION_MONTHS and "
        "weekly aggregates older than SIZEAGG_WEEKLY_RETENTION_MONTHS. All off by default; monthly "
        "and quarterly aggregates are kept forever."
    ),
    pool=APP_DB_POOL,
)
def apply_retention(context: dg.OpExecutionContext, db: AppDatabase) -> None:
    try:
        settings = retention_settings()
    except ValueError as exc:
        raise dg.Failure(description=f"{exc}; nothing was deleted") from None
    today = CALENDAR.today(utc_now())
    context.log.info(f"retention as of {today}: {_settings_text(settings)}")
    try:
        report = retention.apply_retention(db.engine, settings, today, context.log.info)
    except retention.RetentionError as exc:
        raise dg.Failure(description=str(exc)) from None
    for event in observations(report):
        context.log_event(event)
    metadata = run_metadata(report)
    if report.refusals:
        raise dg.Failure(description="; ".join(str(r) for r in report.refusals), metadata=metadata)
    context.add_output_metadata(metadata)


@dg.job(
    description=(
        "Retention: drop raw rows, daily and weekly aggregates older than their settings "
        "(SIZEAGG_*_RETENTION_MONTHS, off by default), never a raw month not yet summarised."
    ),
)
def retention_job() -> None:
    apply_retention()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="0 2 2 * *",
    execution_timezone=CALENDAR.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "On the 2nd of every month at 02:00 business time (the month before has closed and been "
        "aggregated): retention_job. With every retention setting off, it drops nothing."
    ),
)
