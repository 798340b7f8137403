"""core/quality.py: the session counts check reads the newest sessions only, so its cost stays flat.

The checks as the UI runs them are in defs/sessions/test_checks.py and defs/aggregates/test_checks.py.
"""

from __future__ import annotations

import sqlalchemy as sa

from sizeagg_pipeline.core import quality, schema, sessions
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline_tests.support.data import three_active_one_inactive


def test_the_counts_check_reads_the_newest_sessions(engine: sa.Engine) -> None:
    three_active_one_inactive(engine)
    with engine.begin() as conn:
        ids = []
        for _ in range(3):
            ids.append(sessions.open_session(conn, sync_type=SyncType.MANUAL, details={}))
            sessions.complete_session(conn, ids[-1], {}, {})
        s = schema.sync_sessions
        conn.execute(sa.update(s).where(s.c.session_id == ids[0]).values(successful_instances=9))
        assert not quality.session_counts_add_up(conn, recent=3).passed  # the oldest is among them
        newest_two = quality.session_counts_add_up(conn, recent=2)
    assert newest_two.passed and newest_two.counts["sessions"] == 2, newest_two
