"""defs/alerts/sensors.py: a real SMTP server and webhook receive one message per failure.

A failed session (and none for a completed one) and the ERROR check that failed with
it, from the `alerts` sensor; a failed forecast run from `run_failure_alerts`; the
SMTP password appears nowhere in the Dagster instance or the alert history.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import run_tick
from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.settings import utc_now
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.defs.alerts.sensors import alert_tick, check_descriptions, run_failure_alerts
from sizeagg_pipeline.defs.forecast.schedule import capacity_forecast_job
from sizeagg_pipeline.defs.resources import AppDatabase
from sizeagg_pipeline_tests.support.channels import (
    SmtpServer,
    WebhookServer,
    self_signed,
    smtp_server,
    webhook_server,
)
from sizeagg_pipeline_tests.support.data import RUN_DAY, add_db_rows, every_kind_of_instance

PASSWORD = "pa55-w0rd-never-logged"
CHECKS = check_descriptions(defs.get_repository_def())


@pytest.fixture
def channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpServer, WebhookServer]]:
    """STARTTLS with a login (so there is a password to leak) and a generic webhook."""
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with smtp_server(tls=(cert, key)) as smtp, webhook_server() as hook:
        for name, value in {**smtp.env(security="starttls"), **hook.env()}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SIZEAGG_SMTP_USER", "alerts@example.com")
        monkeypatch.setenv("SIZEAGG_SMTP_PASSWORD", PASSWORD)
        monkeypatch.setenv("SIZEAGG_UI_URL", "https://dagster.example.com")
        yield smtp, hook


def _tick(instance: dg.DagsterInstance, engine: sa.Engine, cursor: str | None = None) -> str:
    result = alert_tick(instance, engine, CHECKS, cursor, utc_now())
    assert result.cursor is not None
    return result.cursor


def _leaks(instance: dg.DagsterInstance, engine: sa.Engine) -> list[str]:
    """Every place the password could have been written: event logs of every run, run config, alerts."""
    found = []
    for run in instance.get_runs():
        if PASSWORD in str(run.run_config) or PASSWORD in str(run.tags):
            found.append(f"run {run.run_id} config or tags")
        for record in instance.all_logs(run.run_id):
            if PASSWORD in (record.message or "") or PASSWORD in str(record.dagster_event):
                found.append(f"event log of {run.run_id}")
    with engine.connect() as conn:
        for row in conn.execute(sa.select(schema.capacity_alerts)).mappings():
            if PASSWORD in str(dict(row)):
                found.append(f"capacity_alerts {row['key']}")
    return found


def test_a_failed_session_and_its_failed_check_one_message_each(
    engine: sa.Engine, dagster_instance: dg.DagsterInstance, channels: tuple[SmtpServer, WebhookServer]
) -> None:
    smtp, hook = channels
    every_kind_of_instance(engine)
    completed = run_tick(defs, dagster_instance, RUN_DAY - timedelta(days=1))
    assert completed.status == "completed"
    # a negative size read only by the quarterly partition (its previous window)
    with engine.begin() as conn:
        add_db_rows(
            conn,
            [{"instance_id": 2, "database_name": "db0", "size_mb": -7, "collected_date": date(2025, 12, 15)}],
        )
    failed = run_tick(defs, dagster_instance, RUN_DAY)
    assert failed.status == "failed"

    cursor = _tick(dagster_instance, engine)
    assert sorted(smtp.subjects()) == [
        f"[sizeagg] CRITICAL: aggregation session failed: {_execution(engine, failed.session_id)}",
        "[sizeagg] CRITICAL: check failed: raw_rows_valid on database_size_quarterly",
    ]
    assert len(hook.delivered) == 2

    session_mail = next(m for m in smtp.messages if "session" in str(m["Subject"]))
    body = session_mail.get_content().replace("\r\n", "\n").splitlines()
    execution = _execution(engine, failed.session_id)
    assert body[0] == f"Execution: {execution} (manual_task)"
    assert body[1].startswith(f"Session: {failed.session_id} failed at 2")
    assert body[2] == "Instances: 4 in the session, 0 succeeded, 4 failed"
    assert body[3] == (
        "Partitions: daily 2026-03-16 success; weekly 2026-03-16 success; monthly 2026-03-01 success; "
        "quarterly 2026-01-01 failure"
    )
    assert body[4].startswith("Reason: aggregation failed: quarterly partition 2026-01-01 (run ")
    assert "negative size_mb" in body[4]
    assert body[-1] == (
        "https://dagster.example.com/runs?q%5B%5D=tag%3Asizeagg%2Fexecution%3D"
        + execution.replace(":", "%3A")
    )
    check_mail = next(m for m in smtp.messages if "check" in str(m["Subject"]))
    check_body = check_mail.get_content()
    assert "- database_size_quarterly 2026-01-01 (run " in check_body
    assert "Check: raw_rows_valid: Before the write: the database_size_stats rows" in check_body
    assert "https://dagster.example.com/assets/database_size_quarterly?view=checks" in check_body

    # every later tick, or a fresh cursor (a lost one), tells nothing twice
    _tick(dagster_instance, engine, cursor)
    _tick(dagster_instance, engine, None)
    assert len(smtp.messages) == 2 and len(hook.delivered) == 2
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.capacity_alerts.c.kind, schema.capacity_alerts.c.status)).all()
    assert sorted(rows) == [("check", "sent"), ("session", "sent")]
    assert _leaks(dagster_instance, engine) == []


def _execution(engine: sa.Engine, session_id: str) -> str:
    records = schema.sync_instance_records
    with engine.connect() as conn:
        details = conn.execute(
            sa.select(records.c.sync_details).where(records.c.session_id == session_id).limit(1)
        ).scalar_one()
    return str(details["execution"])


def test_a_failed_forecast_run_is_told_by_the_run_failure_sensor(
    engine: sa.Engine,
    dagster_instance: dg.DagsterInstance,
    channels: tuple[SmtpServer, WebhookServer],
    app_url: str,
) -> None:
    smtp, hook = channels
    job = defs.resolve_job_def(capacity_forecast_job.name)
    result = job.execute_in_process(
        instance=dagster_instance,
        partition_key="2026-03-16",
        run_config={"ops": {"capacity_forecast": {"config": {"window_days": 1}}}},  # invalid: fails
        raise_on_error=False,
        resources={"db": AppDatabase(url=app_url)},
    )
    assert not result.success
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_instance=dagster_instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"db": AppDatabase(url=app_url)},
    ) as context:
        told = run_failure_alerts(context.for_run_failure())
        assert isinstance(told, dg.SkipReason) and "sent" in str(told.skip_message)
        run_failure_alerts(context.for_run_failure())  # evaluated again: nothing twice
    assert smtp.subjects() == ["[sizeagg] WARNING: run failed: capacity_forecast_job"]
    body = smtp.messages[0].get_content()
    assert "Job: capacity_forecast_job" in body and "Partition: 2026-03-16" in body
    assert "Error: ValueError: window_days must be at least 2" in body
    assert f"https://dagster.example.com/runs/{result.run_id}" in body
    assert [h["title"] for h in hook.delivered] == ["run failed: capacity_forecast_job"]
    assert _leaks(dagster_instance, engine) == []
