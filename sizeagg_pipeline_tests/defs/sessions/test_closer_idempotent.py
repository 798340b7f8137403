"""defs/sessions/closer.py: ending an execution that never opened a session twice writes one session.

On the data set of cli/test_run.py (four active instances among six), so the
failed session's counts are checked against active instances only.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import sessions
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline_tests.support.data import every_kind_of_instance
from sizeagg_pipeline_tests.support.session_rows import session_count as _session_count
from sizeagg_pipeline_tests.support.session_rows import write_failed_session


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 with data, 4 active without data, 5 inactive, 6 soft-deleted."""
    return every_kind_of_instance(engine)


def test_failure_writer_is_idempotent(data: sa.Engine, dagster_instance: dg.DagsterInstance) -> None:
    from sizeagg_pipeline.defs.sessions import executions

    execution = executions.Execution(
        id="manual:test:1", sync_type=SyncType.SCHEDULED, runs=[], missing=["no daily run"]
    )
    first = write_failed_session(data, execution)
    second = write_failed_session(data, execution)
    assert first == second
    assert _session_count(data) == 1
    with data.connect() as conn:
        summary = sessions.get_session(conn, first)
    assert (summary.status, summary.sync_type, summary.failed_instances, summary.total_instances) == (
        "failed",
        "scheduled_task",
        4,
        4,
    )
