"""defs/sessions/closer.py: writers racing to end one execution's session write exactly one.

That ending twice changes nothing is in test_closer_idempotent.py (a data set of
its own).
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline.defs.sessions import executions
from sizeagg_pipeline_tests.support.execution import ACTIVE
from sizeagg_pipeline_tests.support.session_rows import assert_ended, session_ids_of, write_failed_session


def test_racing_failure_writers_write_one_session(data: sa.Engine) -> None:
    execution = executions.Execution(
        id="scheduled:race", sync_type=SyncType.SCHEDULED, runs=[], missing=["no daily run in this execution"]
    )
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def writer() -> None:
        barrier.wait()
        ids.append(write_failed_session(data, execution))

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 4
    assert session_ids_of(data, "scheduled:race") == ids[:1]
    assert_ended(data, ids[0], "failed", total=ACTIVE, message="no daily run in this execution")
