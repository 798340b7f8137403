"""defs/alerts/freshness.py: a missed deadline (frozen clock) fails the freshness check; told once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import run_tick
from sizeagg_pipeline.core.periods import Period
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.alerts import freshness
from sizeagg_pipeline.defs.alerts.freshness import (
    aggregate_freshness_checks,
    closed_window,
    freshness_checks_sensor,
)
from sizeagg_pipeline.defs.alerts.sensors import alert_tick, check_descriptions
from sizeagg_pipeline_tests.support.channels import SmtpServer, smtp_server
from sizeagg_pipeline_tests.support.data import three_active_one_inactive

TZ = ZoneInfo("Asia/Shanghai")
CHECK_JOB = dg.define_asset_job(
    "freshness_only", selection=dg.AssetSelection.checks(aggregate_freshness_checks)
)
DEFS = dg.Definitions.merge(defs, dg.Definitions(jobs=[CHECK_JOB]))


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with smtp_server() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def test_the_closed_window_of_each_period() -> None:
    monday = date(2026, 3, 16)
    assert closed_window(Period.DAILY, monday).key == "2026-03-15"
    assert closed_window(Period.WEEKLY, monday).key == "2026-03-09"  # the week that ended yesterday
    assert closed_window(Period.WEEKLY, date(2026, 3, 18)).key == "2026-03-09"  # still that week on Wednesday
    assert closed_window(Period.MONTHLY, date(2026, 4, 1)).key == "2026-03-01"
    assert closed_window(Period.QUARTERLY, date(2026, 3, 18)).key == "2025-10-01"


def _evaluate(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch, now: datetime) -> dict[str, str]:
    monkeypatch.setattr(freshness, "utc_now", lambda: now)
    result = DEFS.resolve_job_def(CHECK_JOB.name).execute_in_process(instance=instance)
    return {
        e.asset_key.to_user_string(): ("passed" if e.passed else "failed")
        + f" {e.metadata['expected_partition'].value}"
        for e in result.get_asset_check_evaluations()
    }


def test_a_missed_deadline_is_one_message(
    engine: sa.Engine, dagster_instance: dg.DagsterInstance, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_active_one_inactive(engine)  # raw data until 2026-03-18, a Wednesday
    assert run_tick(defs, dagster_instance, date(2026, 3, 17)).status == "completed"

    # 05:59 on the 19th: the deadline of the 18th has not passed; the 17th is what is expected
    before = _evaluate(dagster_instance, monkeypatch, datetime(2026, 3, 19, 5, 59, tzinfo=TZ))
    assert before["database_size_daily"] == "passed 2026-03-17"
    assert before["instance_size_weekly"] == "failed 2026-03-09"  # last week never ran here
    # 06:00: yesterday's (the 18th) daily partitions are due, and missing
    after = _evaluate(dagster_instance, monkeypatch, datetime(2026, 3, 19, 6, 0, tzinfo=TZ))
    assert after["database_size_daily"] == after["instance_size_daily"] == "failed 2026-03-18"

    checks = check_descriptions(DEFS.get_repository_def())
    now = datetime(2026, 3, 19, 6, 1, tzinfo=TZ)
    cursor = alert_tick(dagster_instance, engine, checks, None, now).cursor
    alert_tick(dagster_instance, engine, checks, cursor, now)
    [mail] = smtp.messages
    subject = " ".join(str(mail["Subject"]).split())
    assert subject.startswith(
        "[sizeagg] WARNING: missed deadline: database_size_daily, database_size_monthly, "
    )
    body = mail.get_content()
    assert (
        "partition 2026-03-18 (daily 2026-03-18..2026-03-18) was not materialized by 2026-03-19 06:00" in body
    )
    assert "Check: freshness_check: By 06:00 Asia/Shanghai (SIZEAGG_FRESHNESS_DEADLINE)" in body


def test_the_freshness_sensor_asks_for_every_check_on_a_fresh_deployment(
    dagster_instance: dg.DagsterInstance,
) -> None:
    context = dg.build_sensor_context(instance=dagster_instance, definitions=defs)
    result = freshness_checks_sensor(context)
    assert isinstance(result, dg.RunRequest)
    assert {k.name for k in result.asset_check_keys or []} == {"freshness_check"}
    assert len(result.asset_check_keys or []) == 8
