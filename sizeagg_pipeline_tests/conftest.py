"""Shared fixtures: a real application database per test, and a Dagster instance.

`app_url` is parametrized by backend. Every test that asks for it runs once per
backend in BACKENDS; SQLite is a file under the test's tmp_path, PostgreSQL a fresh
database on the session's own server (`postgres.py`; `-m "not postgres"` skips it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR

from .postgres import PostgresServer, running_server

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture(params=BACKENDS)
def app_url(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    """URL of an empty application database; also exported as SIZEAGG_DATABASE_URL."""
    if request.param == "sqlite":
        url = _sqlite_url(tmp_path)
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    monkeypatch.setenv(DATABASE_URL_VAR, url)
    return url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 server per test session, on a free loopback port."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgresql_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database on the session's server; dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def engine(app_url: str) -> Iterator[sa.Engine]:
    """Engine on a database with every table created."""
    eng = schema.make_engine(app_url)
    schema.create_missing(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def dagster_instance(tmp_path) -> Iterator[dg.DagsterInstance]:  # type: ignore[no-untyped-def]
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


# --------------------------------------------------------------------------- data helpers


def add_instances(conn: sa.Connection, count: int, *, inactive: tuple[int, ...] = ()) -> list[int]:
    """Instances named i1..iN; ids returned in order."""
    rows = [
        {"name": f"i{n}", "db_type": "mysql", "host": "h", "port": 3306, "is_active": n not in inactive}
        for n in range(1, count + 1)
    ]
    conn.execute(schema.instances.insert(), rows)
    return list(conn.execute(sa.select(schema.instances.c.id).order_by(schema.instances.c.id)).scalars())


def add_db_rows(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    full = [{"data_size_mb": None, "log_size_mb": None, **r} for r in rows]
    conn.execute(schema.database_size_stats.insert(), full)


def add_instance_rows(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    conn.execute(schema.instance_size_stats.insert(), rows)


def fill_days(
    conn: sa.Connection,
    instance_ids: list[int],
    first: date,
    last: date,
    databases: int = 2,
    size: int = 100,
) -> None:
    """A complete, consistent data set: every database every day, instance totals to match."""
    day = first
    db_rows, inst_rows = [], []
    while day <= last:
        for instance_id in instance_ids:
            sizes = [size + instance_id * 10 + d + (day - first).days for d in range(databases)]
            for d, value in enumerate(sizes):
                db_rows.append(
                    {
                        "instance_id": instance_id,
                        "database_name": f"db{d}",
                        "size_mb": value,
                        "collected_date": day,
                    }
                )
            inst_rows.append(
                {
                    "instance_id": instance_id,
                    "total_size_mb": sum(sizes),
                    "database_count": databases,
                    "collected_date": day,
                }
            )
        day += timedelta(days=1)
    add_db_rows(conn, db_rows)
    add_instance_rows(conn, inst_rows)


def slice_rows(conn: sa.Connection, table: sa.Table, period: str, start: date) -> list[dict[str, object]]:
    """Rows of one slice, without the timestamps, in key order."""
    drop = {"id", "calculated_at", "created_at"}
    rows = conn.execute(
        sa.select(table)
        .where(table.c.period_type == period, table.c.period_start == start)
        .order_by(*[c for c in table.primary_key.columns], table.c.instance_id)
    ).mappings()
    result = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    return sorted(result, key=lambda r: (r["instance_id"], str(r.get("database_name", ""))))
