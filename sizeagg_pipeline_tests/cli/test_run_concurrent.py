"""cli/run.py: two executions of one date (a scheduled and a manual one), in two processes at once.

Each gets its own session, both complete, and the aggregate tables hold exactly
what one clean write computes. A data set of its own (three active instances, one
inactive), hence a file of its own next to test_run.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation
from sizeagg_pipeline.core.levels import LEVELS
from sizeagg_pipeline.core.periods import PERIODS, windows_for_date
from sizeagg_pipeline.core.sessions import SyncType
from sizeagg_pipeline_tests.support.data import slice_rows, three_active_one_inactive
from sizeagg_pipeline_tests.support.execution import ACTIVE, DAY
from sizeagg_pipeline_tests.support.paths import ROOT
from sizeagg_pipeline_tests.support.session_rows import all_session_rows, assert_ended, session_row


@pytest.fixture
def data(engine: sa.Engine) -> sa.Engine:
    """Instances 1-3 active, 4 inactive; two databases each, every day since 2026-02-20."""
    return three_active_one_inactive(engine)


_TICK = """
import sys
from datetime import date
import dagster as dg
from sizeagg_pipeline.definitions import defs
from sizeagg_pipeline.cli.run import run_tick
from sizeagg_pipeline.core.sessions import SyncType
with dg.DagsterInstance.get() as instance:
    day = date.fromisoformat(sys.argv[1])
    summary = run_tick(defs, instance, day, SyncType(sys.argv[2]), {"hold_seconds": 2})
print(summary.session_id)
"""


@pytest.mark.slow
def test_concurrent_executions_of_one_date(
    data: sa.Engine, app_url: str, tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    """A scheduled and a manual execution of the same date, in two processes at once."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"), "SIZEAGG_DATABASE_URL": app_url}
    Path(env["DAGSTER_HOME"]).mkdir(exist_ok=True)
    procs = {
        sync_type: subprocess.Popen(
            [sys.executable, "-c", _TICK, DAY.isoformat(), sync_type],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for sync_type in (SyncType.SCHEDULED, SyncType.MANUAL)
    }
    ids = {}
    for sync_type, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        ids[sync_type] = out.strip().splitlines()[-1]
    assert ids[SyncType.SCHEDULED] != ids[SyncType.MANUAL]
    sessions_rows = all_session_rows(data)
    assert len(sessions_rows) == 2
    for sync_type, session_id in ids.items():
        records = assert_ended(data, session_id, "completed", total=ACTIVE)
        assert session_row(data, session_id)["sync_type"] == sync_type
        assert [r["items_synced"] for r in records] == [12, 12, 12]
    # the two sessions were open at the same time
    a, b = sessions_rows
    assert a["started_at"] < b["completed_at"] and b["started_at"] < a["completed_at"]

    # the aggregate tables are exactly what one clean write computes
    windows = windows_for_date(DAY)
    with data.connect() as conn:
        before = {
            (lvl.name, p): slice_rows(conn, lvl.target, p.value, windows[p].start)
            for lvl in LEVELS
            for p in PERIODS
        }
    for level in LEVELS:
        for period in PERIODS:
            aggregation.aggregate(data, level, [windows[period]])
    with data.connect() as conn:
        after = {
            (lvl.name, p): slice_rows(conn, lvl.target, p.value, windows[p].start)
            for lvl in LEVELS
            for p in PERIODS
        }
    assert after == before
    assert len(before[("database", PERIODS[0])]) == 8  # 4 instances x 2 databases, inactive one too
