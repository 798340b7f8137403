"""cli/preflight.py and cli/main.py: every bad input or environment problem is one line, exit 2.

The installed `sizeagg` script in a fresh directory, as a user runs it: a schema that
does not exist yet, a date in the future, bad settings, an unreachable database, a
read-only SQLite file, a misspelt driver. Each case asserts the exact single stderr
line, the exit status, and that nothing was written (no database file, no Dagster
instance, no row). A failed session (exit 1) is in test_main.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline_tests.support.cli import sizeagg
from sizeagg_pipeline_tests.support.postgres import free_port

SUPPORTED = "sqlite:///path/to/file.db or postgresql+psycopg2://user:password@host:5432/database"


def _one_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The single stderr line of a run that failed with `status` and printed nothing else."""
    assert (result.returncode, result.stdout) == (status, ""), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in schema.metadata.sorted_tables
        }


def test_run_before_init_db(app_url: str, tmp_path: Path) -> None:
    result = sizeagg(tmp_path, "run", "--date", "2026-05-31")
    shown = sa.make_url(app_url).render_as_string(hide_password=True)
    missing = " (no such file)" if app_url.startswith("sqlite") else ""
    assert _one_line(result) == (
        f"sizeagg run: error: the schema is missing in {shown}{missing}: run `sizeagg init-db`"
    )
    assert list(tmp_path.iterdir()) == []  # no database file, no Dagster instance
    listing = sizeagg(tmp_path, "sessions")
    assert _one_line(listing) == (
        f"sizeagg sessions: error: the schema is missing in {shown}{missing}: run `sizeagg init-db`"
    )


def test_a_date_in_the_future(engine: sa.Engine, tmp_path: Path) -> None:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    tomorrow = today + timedelta(days=1)
    before = _row_counts(engine)
    result = sizeagg(tmp_path, "run", "--date", f"{today}..{tomorrow}", env={"SIZEAGG_TIMEZONE": ""})
    assert _one_line(result) == (
        f"sizeagg run: error: --date {tomorrow} is in the future (today is {today} in Asia/Shanghai): "
        f"pass a date up to {today}"
    )
    assert _row_counts(engine) == before
    assert not (tmp_path / ".sizeagg").exists()


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "SIZEAGG_START_DATE",
            "2024-02-01",
            "SIZEAGG_START_DATE=2024-02-01 is not the first day of a quarter: set it to 2024-01-01, "
            "the first day of its quarter",
        ),
        (
            "SIZEAGG_TIMEZONE",
            "Asia/Shangai",
            "SIZEAGG_TIMEZONE='Asia/Shangai' is not a known IANA time zone: did you mean Asia/Shanghai?",
        ),
        (
            "SIZEAGG_SENSOR_INTERVAL_SECONDS",
            "30s",
            "SIZEAGG_SENSOR_INTERVAL_SECONDS='30s' is not a whole number of at least 1: set one, "
            "or unset it for the default (30)",
        ),
    ],
)
def test_a_bad_setting(tmp_path: Path, variable: str, value: str, line: str) -> None:
    """Settings the Dagster layer reads at import time: checked before it is imported."""
    result = sizeagg(tmp_path, "run", "--date", "2026-05-31", env={variable: value})
    assert _one_line(result) == f"sizeagg run: error: {line}"
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_database(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg2://sizeagg:secret@127.0.0.1:{port}/capacity"
    result = sizeagg(tmp_path, "run", "--date", "2026-05-31", env={DATABASE_URL_VAR: url})
    assert _one_line(result) == (
        f"sizeagg run: error: cannot connect to postgresql+psycopg2://sizeagg:***@127.0.0.1:{port}/capacity "
        f'(connection to server at "127.0.0.1", port {port} failed: Connection refused): '
        "check SIZEAGG_DATABASE_URL and that the database is up and reachable"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "postgresql+psycopg3://sizeagg@127.0.0.1/capacity",
            "SIZEAGG_DATABASE_URL names the driver 'postgresql+psycopg3', which is not installed: "
            f"use {SUPPORTED}",
        ),
        (
            "mysql://sizeagg@127.0.0.1/capacity",
            "SIZEAGG_DATABASE_URL names the database 'mysql', which sizeagg does not run on: "
            f"use {SUPPORTED}",
        ),
        (
            "postgres ql://sizeagg:secret@db/capacity",
            f"SIZEAGG_DATABASE_URL is not a database URL SQLAlchemy can parse: use {SUPPORTED}",
        ),
    ],
)
def test_a_misspelt_database_url(tmp_path: Path, url: str, line: str) -> None:
    for command in (["init-db"], ["run", "--date", "2026-05-31"]):
        result = sizeagg(tmp_path, *command, env={DATABASE_URL_VAR: url})
        assert _one_line(result) == f"sizeagg {command[0]}: error: {line}"
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """`path` read-only for this user. Root ignores file modes, so as root the file is also
    made immutable (chattr +i), which root cannot write either."""
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root, and chattr +i is not available on this file system")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


def test_a_read_only_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    url = f"sqlite:///{path}"
    engine = schema.make_engine(url)
    schema.create_missing(engine)
    before = _row_counts(engine)
    engine.dispose()
    work = tmp_path / "work"
    work.mkdir()
    with _read_only(path):
        result = sizeagg(work, "run", "--date", "2026-05-31", env={DATABASE_URL_VAR: url})
        assert _one_line(result) == (
            f"sizeagg run: error: {url} is read-only (attempt to write a readonly database): make it "
            "writable for this user (for SQLite, the file and its directory), or set "
            "SIZEAGG_DATABASE_URL to a writable database"
        )
        demo = sizeagg(work, "demo-data", "--days", "2", env={DATABASE_URL_VAR: url})
        assert _one_line(demo).startswith(f"sizeagg demo-data: error: {url} is read-only (")
        # reading still works
        assert sizeagg(work, "sessions", env={DATABASE_URL_VAR: url}).returncode == 0
    assert list(work.iterdir()) == []
    engine = schema.make_engine(url)
    assert _row_counts(engine) == before
    engine.dispose()


def test_usage_errors_and_verbose(tmp_path: Path) -> None:
    assert _one_line(sizeagg(tmp_path, "run")) == (
        "sizeagg run: error: the following arguments are required: --date (see `sizeagg run --help`)"
    )
    # --verbose adds the traceback; the last line is the same
    verbose = sizeagg(tmp_path, "run", "--date", "2026-05-31", "-v", env={"SIZEAGG_START_DATE": "2024-02-01"})
    assert verbose.returncode == 2
    assert verbose.stderr.startswith("Traceback (most recent call last):")
    assert verbose.stderr.splitlines()[-1] == (
        "sizeagg run: error: SIZEAGG_START_DATE=2024-02-01 is not the first day of a quarter: "
        "set it to 2024-01-01, the first day of its quarter"
    )
