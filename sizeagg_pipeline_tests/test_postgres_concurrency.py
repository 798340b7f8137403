"""Two writers at once on PostgreSQL (issue 5, point 4).

Overlap is made certain rather than hoped for: the test holds a lock the writers
need, waits until PostgreSQL shows both of them blocked on it, then lets go.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import aggregation, schema, sessions
from sizeagg_pipeline.core.periods import Period, windows_between
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR

from .conftest import add_instances, fill_days, slice_rows

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MONTH = "2026-01-01"
INSTANCES, DATABASES = 4, 5


@pytest.fixture
def pg_engine(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    engine = schema.make_engine(postgresql_url)
    schema.create_missing(engine)
    yield engine
    engine.dispose()


def _wait_for_blocked(
    engine: sa.Engine, count: int, procs: list[subprocess.Popen], timeout: float = 120
) -> None:
    """Until `count` other sessions of this database wait on a lock (or a writer died)."""
    deadline = time.monotonic() + timeout
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() >= count:
                return
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"a writer ended before blocking (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.1)
    pytest.fail(f"fewer than {count} writers blocked within {timeout} s")


def _finish(procs: list[subprocess.Popen], timeout: float = 180) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}\n{err}"
        outputs.append(out)
    return outputs


def test_two_runs_materializing_one_partition_at_once(pg_engine: sa.Engine, tmp_path: Path) -> None:
    with pg_engine.begin() as conn:
        ids = add_instances(conn, INSTANCES)
        fill_days(conn, ids, date(2025, 12, 1), date(2026, 1, 31), databases=DATABASES)

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")  # pools: app_db writers bounded
    # Create the instance's storage once, as any deployment has: two processes creating a
    # fresh SQLite storage at the same moment can both stamp its alembic version.
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "sizeagg_pipeline",
        "--select",
        "database_size_monthly,instance_size_monthly",
        "--partition",
        MONTH,
    ]
    blocker = pg_engine.connect()
    try:
        transaction = blocker.begin()
        # Writers may read while this is held, but not write: both runs get as far as
        # their upserts (or the per-slice lock behind them) and wait there.
        blocker.exec_driver_sql(
            "LOCK TABLE database_size_aggregations, instance_size_aggregations IN EXCLUSIVE MODE"
        )
        procs = [
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        try:
            _wait_for_blocked(pg_engine, 2, procs)
            transaction.rollback()
            _finish(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        blocker.close()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2

    month = windows_between(Period.MONTHLY, MONTH, MONTH)
    with pg_engine.connect() as conn:
        for table, per_instance in (
            (schema.database_size_aggregations, DATABASES),
            (schema.instance_size_aggregations, 1),
        ):
            keys = [c for c in ("instance_id", "database_name") if c in table.c]
            duplicates = conn.execute(
                sa.select(*[table.c[k] for k in keys], sa.func.count())
                .where(table.c.period_type == "monthly")
                .group_by(*[table.c[k] for k in keys])
                .having(sa.func.count() > 1)
            ).all()
            assert duplicates == []
            total = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.period_type == "monthly")
            ).scalar_one()
            assert total == INSTANCES * per_instance
        after_race = {
            t.name: slice_rows(conn, t, "monthly", month[0].start)
            for t in (schema.database_size_aggregations, schema.instance_size_aggregations)
        }
    # exact values: identical to one more, uncontended write of the same partition
    for level in aggregation.LEVELS:
        result = aggregation.aggregate(pg_engine, level, month)
        assert (result.inserted, result.deleted) == (0, 0)
    with pg_engine.connect() as conn:
        for table in (schema.database_size_aggregations, schema.instance_size_aggregations):
            assert slice_rows(conn, table, "monthly", month[0].start) == after_race[table.name]
    # and by hand: instance 1, db0, January: 110 + day index 31..61 → mean 156, vs December's 125
    db0 = next(r for r in after_race["database_size_aggregations"] if r["database_name"] == "db0")
    assert (db0["avg_size_mb"], db0["size_change_mb"], db0["size_change_percent"]) == (
        156,
        31,
        Decimal("24.80"),
    )


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
        changed = sessions.finalise_session(conn, session_id, status="failed", reason="racing finaliser")
        print(json.dumps({"how": how, "changed": changed}))
"""


def test_two_finalisers_racing_on_one_session_leave_it_exact(
    pg_engine: sa.Engine, postgresql_url: str
) -> None:
    with pg_engine.begin() as conn:
        add_instances(conn, 6, inactive=(6,))
        session_id = sessions.open_session(conn, sync_type=sessions.SCHEDULED, details={"execution": "race"})

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
        records = dict(
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
