"""defs/sessions/checks.py: the session checks pass on consistent sessions and name the broken ones.

Launched on their own, as the Checks tab's Execute does (`support/checks.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema, sessions
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline_tests.support.checks import Data, recent_days, run_checks


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    # In memory: these tests read evaluations from the run result, not from storage.
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def data(engine: sa.Engine) -> Data:
    """Three instances, two databases each, every day of the last 20."""
    return recent_days(engine)


def test_session_checks(engine: sa.Engine, data: Data, dagster_instance: dg.DagsterInstance) -> None:
    with engine.begin() as conn:
        done = sessions.open_session(conn, sync_type=SyncType.MANUAL, details={})
        sessions.complete_session(conn, done, {}, {})
        running = sessions.open_session(conn, sync_type=SyncType.SCHEDULED, details={})
    found = run_checks(dagster_instance, "sessions")
    assert found[("aggregation_session", "counts_add_up")].passed
    assert found[("aggregation_session", "no_session_running_too_long")].passed

    s = schema.sync_sessions
    with engine.begin() as conn:
        conn.execute(sa.update(s).where(s.c.session_id == done).values(successful_instances=4))
        conn.execute(
            sa.update(s)
            .where(s.c.session_id == running)
            .values(started_at=datetime.now(UTC) - timedelta(hours=3))
        )
    found = run_checks(dagster_instance, "sessions")
    counts = found[("aggregation_session", "counts_add_up")]
    assert not counts.passed
    assert (
        f"{done} (completed): total 3, successful 4, failed 0; records 3 (3 completed" in counts.description
    )
    stuck = found[("aggregation_session", "no_session_running_too_long")]
    assert not stuck.passed
    assert running in stuck.description and "maximum runtime of 7200 s" in stuck.description
