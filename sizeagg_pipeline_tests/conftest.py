"""Shared fixtures, visible to every test folder: application databases and a Dagster instance.

`app_url` is parametrized by backend. Every test that asks for it runs once per
backend in BACKENDS; SQLite is a file under the test's tmp_path, PostgreSQL a fresh
database on the session's own server (`support/postgres.py`; `-m "not postgres"`
skips it). `pg_engine` and `origin` are PostgreSQL only: sizeagg's tables, or the
origin platform's partitioned tables (`support/origin_schema.py`).
Data helpers and data sets are in `support/data.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sizeagg_pipeline.core import schema
from sizeagg_pipeline.core.settings import DATABASE_URL_VAR
from sizeagg_pipeline_tests.support.backends import BACKENDS
from sizeagg_pipeline_tests.support.origin_schema import (
    FEB,
    JAN,
    RAW_MONTHS,
    build_origin_schema,
    disposing_engine,
)
from sizeagg_pipeline_tests.support.postgres import PostgresServer, running_server


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture(params=BACKENDS)
def app_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
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
def dagster_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


# --------------------------------------------------------------------------- PostgreSQL only


@pytest.fixture
def pg_engine(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """sizeagg's tables on a fresh PostgreSQL database, exported as SIZEAGG_DATABASE_URL."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    engine = schema.make_engine(postgresql_url)
    schema.create_missing(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def origin(postgresql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """Origin capacity tables; raw partitions Dec–Feb, aggregate partitions Jan–Feb only."""
    monkeypatch.setenv(DATABASE_URL_VAR, postgresql_url)
    for engine in disposing_engine(postgresql_url):
        build_origin_schema(engine, RAW_MONTHS, aggregate_months=[JAN, FEB])
        yield engine
