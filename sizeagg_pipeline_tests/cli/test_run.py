"""cli/run.py: `run_tick`, a whole execution in process — four period runs, then the session step.

Sessions as docs/contract.md, "Sessions" describes them: one per execution, one
record per active instance. Two executions of one date at once, in two processes,
are in test_run_concurrent.py.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.cli.run import run_tick, tell
from sizeagg_pipeline.core import alerts, schema
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline_tests.support.channels import smtp_server, webhook_server
from sizeagg_pipeline_tests.support.data import RUN_DAY as DAY
from sizeagg_pipeline_tests.support.data import add_db_rows, every_kind_of_instance
from sizeagg_pipeline_tests.support.session_rows import records_by_instance as _records
from sizeagg_pipeline_tests.support.session_rows import session_count as _session_count


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 with data, 4 active without data, 5 inactive, 6 soft-deleted."""
    return every_kind_of_instance(engine)


def test_all_periods_succeed(data: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    summary = run_tick(defs, dagster_instance, DAY)
    assert summary.status == "completed"
    assert (summary.total_instances, summary.successful_instances, summary.failed_instances) == (4, 4, 0)
    assert summary.sync_type == "manual_task"
    assert summary.completed_at is not None
    assert _session_count(data) == 1
    records = _records(data, summary.session_id)
    assert set(records) == {1, 2, 3, 4}  # active instances only: not 5 (inactive) nor 6 (deleted)
    assert {r["status"] for r in records.values()} == {"completed"}
    assert all(r["sync_category"] == "aggregation" and r["completed_at"] for r in records.values())
    # 2 databases + 1 instance row, in each of the 4 periods
    assert [records[i]["items_synced"] for i in (1, 2, 3)] == [12, 12, 12]
    details = records[1]["sync_details"]
    assert details["periods"]["weekly"] == {
        "partitions": ["2026-03-16"],
        "database_rows": 2,
        "instance_rows": 1,
    }
    assert details["periods"]["quarterly"]["partitions"] == ["2026-01-01"]
    assert len(details["dagster_run_ids"]) == 4 and details["session_run_id"]
    run_ids = set(details["dagster_run_ids"]) | {details["session_run_id"]}
    # get_run_by_id is Optional; every id here names a run of this instance (None would fail the test)
    assert {dagster_instance.get_run_by_id(r).status for r in run_ids} == {dg.DagsterRunStatus.SUCCESS}  # type: ignore[union-attr]
    # an active instance without data is completed, with 0 items, and says so
    assert records[4]["items_synced"] == 0 and "no raw data" in records[4]["sync_details"]["note"]
    # the inactive instance's data was still aggregated
    with data.connect() as conn:
        inactive_rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.database_size_aggregations)
            .where(schema.database_size_aggregations.c.instance_id == 5)
        ).scalar_one()
    assert inactive_rows == 4


def test_failed_period_fails_every_record(data: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    # A bad row in Q4 2025 is read only by the quarterly partition (its previous window).
    with data.begin() as conn:
        add_db_rows(
            conn,
            [{"instance_id": 2, "database_name": "db0", "size_mb": -7, "collected_date": date(2025, 12, 15)}],
        )
    summary = run_tick(defs, dagster_instance, DAY)
    assert summary.status == "failed"
    assert (summary.total_instances, summary.successful_instances, summary.failed_instances) == (4, 0, 4)
    assert summary.completed_at is not None
    assert _session_count(data) == 1
    records = _records(data, summary.session_id)
    assert {r["status"] for r in records.values()} == {"failed"}
    assert {r["items_synced"] for r in records.values()} == {0}
    message = records[1]["error_message"]
    assert "quarterly partition 2026-01-01" in message
    assert "negative size_mb" in message and "instance 2" in message and "2025-12-15" in message
    assert "daily" not in message and "weekly" not in message
    # the session step never ran: no run of the session job
    session_runs = dagster_instance.get_runs(dg.RunsFilter(job_name="aggregation_session_job"))
    assert session_runs == []
    # the periods that succeeded did write their aggregates
    with data.connect() as conn:
        periods = set(
            conn.execute(sa.select(schema.database_size_aggregations.c.period_type).distinct()).scalars()
        )
    assert periods == {"daily", "weekly", "monthly"}


def test_sizeagg_run_tells_its_failed_session_and_delivery_failures_change_nothing(
    data: sa.Engine, dagster_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusing SMTP server, a webhook answering 500 then 200: retried, recorded, session as it was."""
    with data.begin() as conn:
        add_db_rows(
            conn,
            [{"instance_id": 2, "database_name": "db0", "size_mb": -7, "collected_date": date(2025, 12, 15)}],
        )
    with smtp_server(refuse=True) as smtp, webhook_server(statuses=[500]) as hook:
        for name, value in {**smtp.env(), **hook.env("dingtalk")}.items():
            monkeypatch.setenv(name, value)
        summary = run_tick(defs, dagster_instance, DAY)
        session_before = _records(data, summary.session_id)
        lines = tell(dagster_instance, [summary])
    assert summary.status == "failed"
    assert _records(data, summary.session_id) == session_before  # the session is what it was
    # first attempt: both fail; the retry 10 s later (within the CLI's patience): the webhook takes it
    assert len(hook.requests) == 2 and len(hook.delivered) == 1
    assert "aggregation session failed" in hook.delivered[0]["text"]["content"]
    assert smtp.attempts == 2 and smtp.messages == []
    assert lines[-1].endswith(
        "pending (email: SMTPDataError: (554, b'5.7.1 Message refused by the test server'))"
    )
    with data.connect() as conn:
        row = conn.execute(sa.select(schema.capacity_alerts)).mappings().one()
    assert (row["kind"], row["status"], row["attempts"]) == ("session", "pending", 2)
    assert row["outcome"]["webhook"]["status"] == "sent" and row["outcome"]["email"]["status"] == "failed"
    assert row["next_attempt_at"] is not None  # the daemon, or the next `sizeagg run`, tries again
    assert row["attempts"] < alerts.MAX_ATTEMPTS
