"""defs/retention/job.py: retention_job run as the UI, the schedule and `dagster job execute` run it.

What it drops is checked in core/test_retention.py; here: what the run tells (its
metadata, the raw assets' new horizon, the aggregate assets' dropped rows), a
refusal failing the run by name, bad settings failing it before anything is
deleted, the monthly schedule, and the command line the issue names.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import QUIET
from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.levels import LEVELS
from sizeagg_pipeline.core.retention import months_before
from sizeagg_pipeline.core.settings import (
    DAILY_RETENTION_VAR,
    DATABASE_URL_VAR,
    RAW_RETENTION_VAR,
    WEEKLY_RETENTION_VAR,
)
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.aggregates.partitions import CALENDAR
from sizeagg_pipeline.defs.retention import job as retention_job_module
from sizeagg_pipeline_tests.support.data import add_instances, fill_days
from sizeagg_pipeline_tests.support.history import (
    aggregate_everything,
    aggregate_rows,
    collected_at,
    six_months,
)
from sizeagg_pipeline_tests.support.paths import BIN, ROOT

NOW = datetime(2026, 8, 15, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # retention as of 2026-08-15


@pytest.fixture
def history(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    six_months(engine)
    aggregate_everything(engine)
    monkeypatch.setattr(retention_job_module, "utc_now", lambda: NOW)
    return engine


def _run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("retention_job").execute_in_process(
        run_config=QUIET, instance=instance, raise_on_error=False
    )


def _output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}  # type: ignore[union-attr]


def _observed(instance: dg.DagsterInstance, asset: str) -> dict[str, Any]:
    (record,) = instance.fetch_observations(dg.AssetKey(asset), limit=1).records
    observation = record.asset_observation
    assert observation is not None
    return {k: v.value for k, v in observation.metadata.items()}


def _raw_rows(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            level.raw.name: conn.execute(sa.select(sa.func.count()).select_from(level.raw)).scalar_one()
            for level in LEVELS
        }


def test_the_run_reports_what_it_dropped_what_it_kept_and_the_new_horizon(
    history: sa.Engine, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RAW_RETENTION_VAR, "6")
    monkeypatch.setenv(DAILY_RETENTION_VAR, "6")
    result = _run(dagster_instance)
    assert result.success

    metadata = _output_metadata(result)
    assert metadata["today"] == "2026-08-15"
    assert metadata["settings"] == "raw 6 months, daily 6 months, weekly off"
    assert metadata["rows_dropped"] == 123 * (6 + 3) * 2  # raw rows and daily aggregates of Oct..Jan
    assert metadata["dropped"] == (
        "- database_size_stats before 2026-02-01: 738 rows deleted in batches\n"
        "- instance_size_stats before 2026-02-01: 369 rows deleted in batches\n"
        "- database_size_aggregations daily before 2026-02-01: 738 rows deleted in batches\n"
        "- instance_size_aggregations daily before 2026-02-01: 369 rows deleted in batches"
    )
    assert metadata["kept"] == (
        "- weekly aggregates: all (SIZEAGG_WEEKLY_RETENTION_MONTHS is off)\n"
        "- monthly and quarterly aggregates: all, always"
    )
    assert (
        "- database_size_stats: 2026-02-01 (sizeagg's retention deleted the rows before 2026-02-01"
        in (metadata["horizons"])
    )

    raw = _observed(dagster_instance, "database_size_stats")
    assert (raw["horizon"], raw["earliest_raw_day"], raw["kept_before_horizon"]) == (
        "2026-02-01",
        "2026-02-01",
        "raw data before 2026-02-01 is gone",
    )
    assert raw["retention"] == "database_size_stats before 2026-02-01: 738 rows deleted in batches"
    daily = _observed(dagster_instance, "instance_size_daily")
    assert daily == {"rows_dropped": 369, "dropped_before": "2026-02-01"}

    again = _run(dagster_instance)  # nothing left to drop
    assert again.success and _output_metadata(again)["rows_dropped"] == 0


def test_a_month_not_summarised_fails_the_run_naming_it(
    history: sa.Engine, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    agg = schema.instance_size_aggregations
    with history.begin() as conn:
        conn.execute(
            sa.delete(agg).where(agg.c.period_type == "quarterly", agg.c.period_start == date(2026, 1, 1))
        )
    monkeypatch.setenv(RAW_RETENTION_VAR, "6")
    result = _run(dagster_instance)
    assert not result.success
    failure = result.failure_data_for_node("apply_retention")
    assert failure is not None and failure.error is not None
    refusal = (
        "kept instance_size_stats 2025-10 and later months: not fully summarised — materialize "
        "instance_size_quarterly 2026-01-01 never written (270 days with a row to summarise)"
    )
    assert refusal in failure.error.message
    assert _observed(dagster_instance, "instance_size_stats")["retention_refused"] == refusal
    assert _observed(dagster_instance, "database_size_stats")["horizon"] == "2026-02-01"  # that one went
    assert _raw_rows(history) == {"database_size_stats": 59 * 6, "instance_size_stats": 182 * 3}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            RAW_RETENTION_VAR,
            "-3",
            "SIZEAGG_RAW_RETENTION_MONTHS=-3 is negative: give at least 6 months, or `off`",
        ),
        (
            DAILY_RETENTION_VAR,
            "two",
            "SIZEAGG_DAILY_RETENTION_MONTHS='two' is not a whole number of months: give one, or `off`",
        ),
        (
            DAILY_RETENTION_VAR,
            "2",
            "SIZEAGG_DAILY_RETENTION_MONTHS=2 is shorter than a quarter: give at least 3 months, or `off`",
        ),
        (
            WEEKLY_RETENTION_VAR,
            "1",
            "SIZEAGG_WEEKLY_RETENTION_MONTHS=1 is shorter than a quarter: give at least 3 months, or `off`",
        ),
        (
            RAW_RETENTION_VAR,
            "4",
            "SIZEAGG_RAW_RETENTION_MONTHS=4 is shorter than two quarters, so that the quarter after a "
            "dropped month has closed: give at least 6 months, or `off`",
        ),
    ],
)
def test_bad_settings_fail_at_start_and_delete_nothing(
    history: sa.Engine,
    dagster_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    for name in (RAW_RETENTION_VAR, DAILY_RETENTION_VAR, WEEKLY_RETENTION_VAR):
        monkeypatch.setenv(name, "6")
    monkeypatch.setenv(variable, value)
    rows, raw = aggregate_rows(history), _raw_rows(history)
    result = _run(dagster_instance)
    assert not result.success
    failure = result.failure_data_for_node("apply_retention")
    assert failure is not None and failure.user_failure_data is not None
    assert failure.user_failure_data.description == f"{message}; nothing was deleted"
    assert aggregate_rows(history) == rows and _raw_rows(history) == raw


def test_the_monthly_schedule_ships_running(dagster_instance: dg.DagsterInstance) -> None:
    schedule = defs.resolve_schedule_def("retention_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 2 * *", CALENDAR.timezone)
    context = dg.build_schedule_context(
        instance=dagster_instance,
        scheduled_execution_time=datetime(2026, 9, 2, 2, 0, tzinfo=ZoneInfo(CALENDAR.timezone)),
    )
    (request,) = schedule.evaluate_tick(context).run_requests or []
    assert schedule.job_name == "retention_job" and request.job_name in (None, "retention_job")


def test_dagster_job_execute_runs_it(tmp_path: Path) -> None:
    """`dagster job execute -m sizeagg_pipeline -j retention_job`, as today, on a SQLite database."""
    today = CALENDAR.today(datetime.now(UTC))
    first, last = months_before(today, 8), months_before(today, 4) - timedelta(days=1)
    cutoff = months_before(today, 6)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = schema.make_engine(url)
    schema.create_missing(engine)
    with engine.begin() as conn:
        ids = add_instances(conn, 2)
        fill_days(conn, ids, first, last)
    collected_at(engine, datetime.now(UTC) - timedelta(hours=1))
    aggregate_everything(engine, first, last)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, DATABASE_URL_VAR: url, RAW_RETENTION_VAR: "6", "DAGSTER_HOME": str(home)}
    done = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "sizeagg_pipeline", "-j", "retention_job"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with engine.connect() as conn:
        for level in LEVELS:
            earliest = conn.execute(sa.select(sa.func.min(level.raw.c.collected_date))).scalar_one()
            assert earliest == cutoff
    engine.dispose()
