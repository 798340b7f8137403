"""core/sessions.py: a session is finalised once, whoever tries and however they race.

Whole executions through `sizeagg run` are in cli/test_run.py; the Dagster-side ways
a session ends are in defs/sessions/.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema, sessions
from sizeagg_pipeline.core.sessions import Outcome, SyncType
from sizeagg_pipeline_tests.support.data import add_instances, every_kind_of_instance
from sizeagg_pipeline_tests.support.paths import ROOT
from sizeagg_pipeline_tests.support.postgres import finish as _finish
from sizeagg_pipeline_tests.support.postgres import wait_for_blocked as _wait_for_blocked
from sizeagg_pipeline_tests.support.session_rows import records_by_instance as _records


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 with data, 4 active without data, 5 inactive, 6 soft-deleted."""
    return every_kind_of_instance(engine)


def test_finalise_twice_changes_nothing(data: sa.Engine) -> None:
    with data.begin() as conn:
        session_id = sessions.open_session(conn, sync_type=SyncType.MANUAL, details={"execution": "x"})
    with data.begin() as conn:
        assert sessions.finalise_session(conn, session_id, Outcome.cancelled("cancelled by user"))
    records_1 = _records(data, session_id)
    with data.begin() as conn:
        assert not sessions.finalise_session(conn, session_id, Outcome.failed("late sensor"))
        summary = sessions.get_session(conn, session_id)
    assert _records(data, session_id) == records_1
    assert summary.status == "cancelled"
    assert summary.successful_instances + summary.failed_instances == summary.total_instances == 4
    assert {r["error_message"] for r in records_1.values()} == {"cancelled by user"}


# --------------------------------------------------------------------------- PostgreSQL: racing finalisers

FINALISER = """
import json, sys
from sizeagg_pipeline.core import schema, sessions
url, session_id, how = sys.argv[1:]
engine = schema.make_engine(url)
with engine.begin() as conn:
    if how == "complete":
        summary = sessions.complete_session(conn, session_id, {}, {"by": "complete"})
        print(json.dumps({"how": how, "status": summary.status}))
    else:
        changed = sessions.finalise_session(conn, session_id, sessions.Outcome.failed("racing finaliser"))
        print(json.dumps({"how": how, "changed": changed}))
"""


@pytest.mark.postgres
def test_two_finalisers_racing_on_one_session_leave_it_exact(
    pg_engine: sa.Engine, postgresql_url: str
) -> None:
    with pg_engine.begin() as conn:
        add_instances(conn, 6, inactive=(6,))
        session_id = sessions.open_session(conn, sync_type=SyncType.SCHEDULED, details={"execution": "race"})

    blocker = pg_engine.connect()
    try:
        transaction = blocker.begin()
        blocker.execute(  # what both finalisers lock first
            sa.select(schema.sync_sessions.c.id)
            .where(schema.sync_sessions.c.session_id == session_id)
            .with_for_update()
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", FINALISER, postgresql_url, session_id, how],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for how in ("complete", "fail")
        ]
        try:
            _wait_for_blocked(pg_engine, 2, procs)
            transaction.rollback()
            complete_out, fail_out = _finish(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        blocker.close()

    with pg_engine.connect() as conn:
        summary = sessions.get_session(conn, session_id)
        records: dict[str, int] = dict(
            conn.execute(
                sa.select(schema.sync_instance_records.c.status, sa.func.count())
                .where(schema.sync_instance_records.c.session_id == session_id)
                .group_by(schema.sync_instance_records.c.status)
            ).all()
        )
    assert summary.total_instances == 5
    assert summary.successful_instances + summary.failed_instances == 5
    assert summary.completed_at is not None
    if '"changed": true' in fail_out:  # the failing finaliser won; completing changed nothing
        assert (summary.status, records) == ("failed", {"failed": 5})
        assert '"status": "failed"' in complete_out
    else:
        assert '"changed": false' in fail_out
        assert (summary.status, records) == ("completed", {"completed": 5})
        assert '"status": "completed"' in complete_out


# --------------------------------------------------------------------------- links: execution → session → run


def test_an_execution_its_session_and_its_session_run_are_found_by_key(data: sa.Engine) -> None:
    with data.begin() as conn:
        first = sessions.open_session(
            conn, sync_type=SyncType.MANUAL, details={"execution": "manual:x", "session_run_id": "run-1"}
        )
        unlinked = sessions.open_session(conn, sync_type=SyncType.MANUAL, details={})  # names no execution
        assert sessions.session_for_execution(conn, "manual:x") == first
        assert sessions.session_for_run(conn, "run-1") == first
        assert sessions.session_for_execution(conn, "manual:y") is None
        assert sessions.session_for_run(conn, "run-2") is None
        # its session step run again (a re-execution): the link follows the newest session
        second = sessions.open_session(
            conn, sync_type=SyncType.MANUAL, details={"execution": "manual:x", "session_run_id": "run-2"}
        )
        assert sessions.session_for_execution(conn, "manual:x") == second
        assert sessions.session_for_run(conn, "run-2") == second
        links = conn.execute(sa.select(schema.sizeagg_executions.c.session_id)).scalars().all()
    assert unlinked not in links and links == [second]


def test_a_registered_execution_is_unlinked_until_its_session_opens(data: sa.Engine) -> None:
    with data.begin() as conn:
        sessions.register_execution(conn, "manual:x", "host 1 start ns")
        sessions.register_execution(conn, "manual:x", "host 2 start ns")  # registered once
        assert [(u.execution_id, u.owner) for u in sessions.unlinked_executions(conn)] == [
            ("manual:x", "host 1 start ns")
        ]
        assert sessions.session_for_execution(conn, "manual:x") is None
        session_id = sessions.open_session(conn, sync_type=SyncType.MANUAL, details={"execution": "manual:x"})
        assert sessions.unlinked_executions(conn) == []
        assert sessions.session_for_execution(conn, "manual:x") == session_id


def test_sessions_written_before_the_link_table_are_linked_once(data: sa.Engine) -> None:
    """What init-db does on a database whose sessions predate sizeagg_executions."""
    with data.begin() as conn:
        ids = [
            sessions.open_session(
                conn,
                sync_type=SyncType.SCHEDULED,
                details={"execution": f"scheduled:{d}", "session_run_id": f"r{d}"},
            )
            for d in (1, 2)
        ]
        other = sessions.open_session(conn, sync_type=SyncType.MANUAL, details={"execution": "other:1"})
        conn.execute(
            sa.update(schema.sync_sessions)
            .where(schema.sync_sessions.c.session_id == other)
            .values(sync_category="capacity")  # another sync category of the origin: not sizeagg's
        )
        conn.execute(sa.delete(schema.sizeagg_executions))  # as before the table existed
        assert sessions.link_existing_sessions(conn) == 2
        assert [sessions.session_for_execution(conn, f"scheduled:{d}") for d in (1, 2)] == ids
        assert sessions.session_for_run(conn, "r2") == ids[1]
        assert sessions.session_for_execution(conn, "other:1") is None
        assert sessions.link_existing_sessions(conn) == 0


def test_linking_old_sessions_reads_each_sessions_records_by_its_index(pg_engine: sa.Engine) -> None:
    """Not the primary key from the start for every session: that took 7.8 min for 3 years."""
    records = schema.sync_instance_records
    with pg_engine.begin() as conn:
        add_instances(conn, 400)
        for day in range(60):
            details = {"execution": f"scheduled:{day}"}
            sessions.open_session(conn, sync_type=SyncType.SCHEDULED, details=details)
        conn.execute(sa.delete(schema.sizeagg_executions))
        conn.execute(sa.text("ANALYZE"))
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one() == 60 * 400
        statement = sessions.unlinked_sessions().compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}"))
        assert "ix_sync_instance_records_session_id" in plan, plan
        assert "sync_instance_records_pkey" not in plan, plan
        assert sessions.link_existing_sessions(conn) == 60


def test_running_sessions_are_the_aggregation_ones_with_their_links(data: sa.Engine) -> None:
    with data.begin() as conn:
        ours = sessions.open_session(
            conn, sync_type=SyncType.MANUAL, details={"execution": "manual:x", "session_run_id": "run-1"}
        )
        theirs = sessions.open_session(conn, sync_type=SyncType.MANUAL, details={})
        conn.execute(
            sa.update(schema.sync_sessions)
            .where(schema.sync_sessions.c.session_id == theirs)
            .values(sync_category="capacity")
        )
        [running] = sessions.running_sessions(conn)
        assert (running.summary.session_id, running.execution_id, running.session_run_id) == (
            ours,
            "manual:x",
            "run-1",
        )
