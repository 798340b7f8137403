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
