"""cli/main.py: the `sizeagg` commands — the README's `make demo` path, bad arguments, the listing.

`init-db`, `demo-data`, `run` and `sessions` as a user types them (the installed
`sizeagg` script in a fresh directory), on a small data set; a date that is not a
date; timestamps printed in UTC whatever the server's time zone; and the whole
command line on a PostgreSQL database that holds the origin's tables.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline import cli
from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline_tests.support.cli import sizeagg as _sizeagg
from sizeagg_pipeline_tests.support.origin_schema import FEB, build_origin_schema
from sizeagg_pipeline_tests.support.origin_schema import disposing_engine as _engine
from sizeagg_pipeline_tests.support.origin_schema import partitions_of as _partitions


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
        periods: dict[str, int] = dict(
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
    # a line per period run, the session and its alert on stdout; the one reason on stderr
    lines = run.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:4]] == [
        "2026-05-31: daily 2026-05-31 FAILED",
        "2026-05-31: weekly 2026-05-25 FAILED",
        "2026-05-31: monthly 2026-05-01 FAILED",
        "2026-05-31: quarterly 2026-04-01 FAILED",
    ]
    assert len(lines) == 6 and lines[4].endswith(" failed: 2 instances, 0 succeeded, 2 failed")
    assert re.fullmatch(
        r"alert: session:[0-9a-f-]{36}:\d{4}-\d\d-\d\d recorded \(no alert channel configured\)", lines[5]
    )
    [reason] = run.stderr.splitlines()
    assert reason.startswith(
        "sizeagg run: 2026-05-31: session failed: aggregation failed: daily partition 2026-05-31 (run "
    )
    assert "InvalidRawData: database_size_stats fails validation for daily 2026-05-31..2026-05-31" in reason
    assert reason.endswith(
        ": fix the cause, then run `sizeagg run --date 2026-05-31` again "
        "(details: `sizeagg sessions`, the runs in the UI)"
    )
    # --verbose: Dagster's event log on the console, the same line last
    verbose = _sizeagg(tmp_path, "run", "--date", "2026-05-31", "--verbose")
    assert verbose.returncode == 1
    assert "STEP_FAILURE" in verbose.stderr and "Stack Trace:" in verbose.stderr
    assert verbose.stderr.splitlines()[-1].startswith("sizeagg run: 2026-05-31: session failed: ")


def test_malformed_date_on_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--date", "2026-13-01"]) == 2
    assert "--date '2026-13-01' is not a valid YYYY-MM-DD date" in capsys.readouterr().err
    assert cli.main(["run", "--date", "2026-05-10..2026-05-01"]) == 2
    assert "reversed" in capsys.readouterr().err
    assert cli.main(["run", "--date", "2019-01-01"]) == 2
    assert "before the first partition" in capsys.readouterr().err


def test_sessions_listing_prints_utc(engine: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """The PostgreSQL test server's TimeZone is Asia/Shanghai: timestamptz comes back at +08."""
    started = datetime(2026, 3, 10, 1, 2, 3, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(schema.sync_sessions).values(
                session_id="00000000-0000-4000-8000-000000000001",
                sync_type="manual_task",
                started_at=started,
            )
        )
        stored = conn.execute(sa.select(schema.sync_sessions.c.started_at)).scalar_one()
    assert (stored if stored.tzinfo else stored.replace(tzinfo=UTC)) == started
    assert cli.main(["sessions"]) == 0
    assert "2026-03-10 01:02:03  running    manual_task" in capsys.readouterr().out


@pytest.mark.postgres
def test_the_cli_end_to_end_on_an_origin_database(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """init-db, demo-data and a daily tick on the origin's tables,
    with the origin's CHECK constraints on the session tables and no aggregate partitions."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for engine in _engine(postgresql_url):
        build_origin_schema(engine, [FEB], sync_tables=True, aggregate_months=[])
        assert cli.main(["init-db"]) == 0
        created = [line for line in capsys.readouterr().out.splitlines() if line.startswith("created ")]
        assert created == [  # the origin has every other table
            "created capacity_alerts",
            "created capacity_forecasts",
            "created capacity_limit_forecasts",
            "created capacity_limits",
            "created raw_horizons",
            "created sizeagg_executions",
        ]
        assert (
            cli.main(
                ["demo-data", "--instances", "4", "--databases", "3", "--days", "45", "--end", "2026-03-10"]
            )
            == 0
        )
        assert cli.main(["run", "--date", "2026-03-10"]) == 0
        out = capsys.readouterr().out
        assert (
            out.count("completed: 3 instances, 3 succeeded, 0 failed") == 1
        )  # one demo instance is inactive
        with engine.connect() as conn:
            raw = _partitions(conn, "database_size_stats")
            aggregates = _partitions(conn, "database_size_aggregations")
            statuses = conn.execute(
                sa.text("SELECT status, count(*) FROM sync_instance_records GROUP BY status")
            ).all()
        assert set(raw) == {f"database_size_stats_2026_0{m}" for m in (1, 2, 3)}
        # daily/weekly/monthly of March, the quarter of January
        assert set(aggregates) == {"database_size_aggregations_2026_01", "database_size_aggregations_2026_03"}
        assert statuses == [("completed", 3)]


def test_limits_commands(app_url: str, tmp_path: Path) -> None:
    """`sizeagg limits`: a bad CSV line is one line naming file and line, exit 2, nothing written."""
    engine = schema.make_engine(app_url)
    schema.create_missing(engine)
    with engine.begin() as conn:
        conn.execute(
            schema.instances.insert(),
            [{"name": n, "db_type": "mysql", "host": "h", "port": 3306} for n in ("orders-db", "crm-db")],
        )
    bad = tmp_path / "limits.csv"
    bad.write_text("instance,database,limit_mb,note\norders-db,,512000,data volume\ncrm-db,crm,12GB,\n")
    refused = _sizeagg(tmp_path, "limits", "import", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"sizeagg limits: error: {bad} line 3: limit_mb '12GB' is not a whole number of MB"
    ]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.capacity_limits)).scalar() == 0

    bad.write_text("instance,database,limit_mb,note\norders-db,,512000,data volume\ncrm-db,crm,12288,\n")
    imported = _sizeagg(tmp_path, "limits", "import", str(bad))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"capacity limits: 2 set from {bad}"
    one = _sizeagg(
        tmp_path, "limits", "set", "--instance", "crm-db", "--limit-mb", "40960", "--note", "SAN lun 7"
    )
    assert one.stdout.strip() == "capacity limits: 1 set: crm-db (instance total)"
    listing = _sizeagg(tmp_path, "limits", "list")
    assert listing.stdout.splitlines()[1:] == [
        "crm-db               (instance total)                     40,960  SAN lun 7",
        "crm-db               crm                                  12,288  ",
        "orders-db            (instance total)                    512,000  data volume",
    ]
    engine.dispose()


def test_start_date_is_the_first_quarter_with_raw_data(app_url: str, tmp_path: Path) -> None:
    """What `make demo` writes into .sizeagg/demo.env, and what a deployment sets SIZEAGG_START_DATE to."""
    assert _sizeagg(tmp_path, "init-db").returncode == 0
    empty = _sizeagg(tmp_path, "start-date")
    assert empty.returncode == 2 and empty.stdout == ""
    assert empty.stderr.strip().splitlines() == [
        "sizeagg start-date: error: no raw rows in database_size_stats or instance_size_stats: "
        "nothing to start from"
    ]
    demo = _sizeagg(
        tmp_path,
        "demo-data",
        "--instances",
        "2",
        "--databases",
        "2",
        "--days",
        "40",
        "--end",
        "2026-05-31",
        "--quarter-aligned",
    )
    assert demo.returncode == 0, demo.stderr
    assert "2026-04-01..2026-05-31" in demo.stdout  # 40 days back is in Q2: the data starts on its first day
    start = _sizeagg(tmp_path, "start-date")
    assert (start.returncode, start.stdout) == (0, "2026-04-01\n")
