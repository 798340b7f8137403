"""What the command line checks before it does anything: the settings and the database.

Every problem found here is bad input or an unusable environment. It becomes one
line on stderr saying what is wrong, where, and what to do (exit status 2), and
nothing has been written when it is found: a missing SQLite file is not created,
and a write is probed with statements that change no row, in a transaction that
is rolled back. Dagster-free: it runs before the Dagster layer is imported, which
reads settings at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from ..core import schema
from ..core.settings import DATABASE_URL_VAR, database_url

# The tables `sizeagg run` writes; a no-op UPDATE of each tells a read-only database
# (or a user without the right) before any run starts.
WRITTEN = (
    schema.database_size_aggregations,
    schema.instance_size_aggregations,
    schema.sync_sessions,
    schema.sync_instance_records,
)
INIT = "run `sizeagg init-db`"
SUPPORTED = "sqlite:///path/to/file.db or postgresql+psycopg2://user:password@host:5432/database"


class BadInput(Exception):
    """Bad input or an unusable environment: one line on stderr, exit status 2."""


def shown(url: str | sa.URL) -> str:
    """The URL as the error messages show it: the password hidden."""
    return sa.make_url(url).render_as_string(hide_password=True)


def engine_for_url(*, existing: bool = False) -> sa.Engine:
    """`schema.make_engine` on SIZEAGG_DATABASE_URL, with an unusable URL said in one line.

    With `existing`, a SQLite file that does not exist is reported, not created.
    """
    url = database_url()
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        # Not echoed: an unparsable URL may still hold a password.
        raise BadInput(
            f"{DATABASE_URL_VAR} is not a database URL SQLAlchemy can parse: use {SUPPORTED}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise BadInput(
            f"{DATABASE_URL_VAR} names the database {parsed.get_backend_name()!r}, which sizeagg "
            f"does not run on: use {SUPPORTED}"
        )
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if existing and path not in (None, "", ":memory:") and not Path(str(path)).exists():
        raise BadInput(f"the schema is missing in {shown(parsed)} (no such file): {INIT}")
    try:
        return schema.make_engine(url)
    except (sa.exc.NoSuchModuleError, ImportError):
        raise BadInput(
            f"{DATABASE_URL_VAR} names the driver {parsed.drivername!r}, which is not installed: "
            f"use {SUPPORTED}"
        ) from None


def database_error(exc: sa.exc.DBAPIError, url: str | sa.URL) -> BadInput:
    """A database error as one line: what failed, on which database, what to do."""
    text = " ".join(str(exc.orig).split("\n")[0].split())
    where = shown(url)
    lowered = text.lower()
    if exc.statement is None:  # no statement yet: the connection itself failed
        return BadInput(
            f"cannot connect to {where} ({text}): check {DATABASE_URL_VAR} and that the database "
            "is up and reachable"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return BadInput(
            f"{where} is read-only ({text}): make it writable for this user (for SQLite, the "
            f"file and its directory), or set {DATABASE_URL_VAR} to a writable database"
        )
    if "permission denied" in lowered:
        return BadInput(
            f"{where}: {text}: grant this user SELECT, INSERT, UPDATE and DELETE on sizeagg's tables"
        )
    return BadInput(f"{where}: {text}")


@contextlib.contextmanager
def database_errors(engine: sa.Engine) -> Iterator[None]:
    """Database errors of the block, as `database_error` says them."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise database_error(exc, engine.url) from None


def check_database(engine: sa.Engine, *, writes: bool) -> None:
    """The schema exists (every table sizeagg knows) and, with `writes`, can be written."""
    url = engine.url
    with database_errors(engine), engine.connect() as conn:
        missing = schema.missing_tables(conn, tuple(schema.metadata.sorted_tables))
        if len(missing) == len(schema.metadata.sorted_tables):
            raise BadInput(f"the schema is missing in {shown(url)}: {INIT}")
        if missing:
            raise BadInput(f"table(s) {', '.join(missing)} missing in {shown(url)}: {INIT}")
        if writes:
            for table in WRITTEN:  # each changes no row; the transaction is rolled back
                conn.execute(sa.update(table).values(id=table.c.id).where(sa.false()))
        conn.rollback()
