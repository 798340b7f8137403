"""The README's `make demo` path: the `sizeagg` commands it runs, on a small data set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from sizeagg_pipeline.core import schema

SIZEAGG = str(Path(sys.executable).parent / "sizeagg")


def _sizeagg(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return subprocess.run([SIZEAGG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _checksum(engine: sa.Engine) -> tuple[int, int]:
    stats = schema.database_size_stats.c
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.select(sa.func.count(), sa.func.sum(stats.size_mb * (stats.instance_id + 1)))
            ).one()
        )


def test_demo_commands(app_url: str, tmp_path: Path) -> None:
    init = _sizeagg(tmp_path, "init-db")
    assert init.returncode == 0, init.stderr
    assert "created sync_sessions" in init.stdout
    again = _sizeagg(tmp_path, "init-db")
    assert "found   sync_sessions" in again.stdout and "created" not in again.stdout

    demo_args = ("demo-data", "--instances", "6", "--databases", "4", "--days", "40", "--end", "2026-05-31")
    demo = _sizeagg(tmp_path, *demo_args, "--seed", "7")
    assert demo.returncode == 0, demo.stderr
    assert "6 instances" in demo.stdout
    engine = schema.make_engine(app_url)
    first = _checksum(engine)
    assert _sizeagg(tmp_path, *demo_args, "--seed", "7").returncode == 0
    assert _checksum(engine) == first  # deterministic, and re-running changes nothing

    run = _sizeagg(tmp_path, "run", "--date", "2026-05-30..2026-05-31")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("completed: 5 instances, 5 succeeded, 0 failed") == 2  # one of 6 is inactive

    listing = _sizeagg(tmp_path, "sessions")
    assert listing.returncode == 0 and listing.stdout.count("completed") == 2
    with engine.connect() as conn:
        sessions = conn.execute(
            sa.select(schema.sync_sessions.c.status, schema.sync_sessions.c.total_instances)
        ).all()
        periods = dict(
            conn.execute(
                sa.select(schema.instance_size_aggregations.c.period_type, sa.func.count()).group_by(
                    schema.instance_size_aggregations.c.period_type
                )
            ).all()
        )
    assert sessions == [("completed", 5), ("completed", 5)]
    assert periods == {"daily": 12, "weekly": 6, "monthly": 6, "quarterly": 6}
    engine.dispose()

    # the runs are in the Dagster instance under .sizeagg/dagster_home, for the UI
    home = tmp_path / ".sizeagg" / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    assert len(runs) == 10
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}


def test_failed_session_exits_non_zero(app_url: str, tmp_path: Path) -> None:
    assert (
        _sizeagg(
            tmp_path,
            "demo-data",
            "--instances",
            "3",
            "--databases",
            "2",
            "--days",
            "5",
            "--end",
            "2026-05-31",
        ).returncode
        == 0
    )
    engine = schema.make_engine(app_url)
    with engine.begin() as conn:
        conn.execute(sa.update(schema.database_size_stats).values(size_mb=-1))
    engine.dispose()
    run = _sizeagg(tmp_path, "run", "--date", "2026-05-31")
    assert run.returncode == 1
    assert "failed: 2 instances, 0 succeeded, 2 failed" in run.stdout
