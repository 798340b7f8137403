"""A throwaway PostgreSQL server for the test session, one fresh database per test, and lock waits.

The server is Debian's `postgresql` package (installed by `make test` / `.ci/run`
when missing), started with `initdb` + `pg_ctl` in a temporary directory on a free
loopback port and stopped on teardown. PostgreSQL refuses to run as root, so under
root every server command runs as the `postgres` system user (`runuser`); the data
directory is a fresh `mkdtemp` directory handed to that user.

Durability is switched off (fsync, synchronous_commit, full_page_writes): a test
server that loses its data on a power cut loses nothing of value, and per-test
`CREATE DATABASE` stays in the tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_BINDIR_VAR = "SIZEAGG_PG_BINDIR"
SERVER_USER = "postgres"
DRIVER = "postgresql+psycopg2"
SUPERUSER = "postgres"
# A non-UTC session time zone: a timestamp written naive or read back without its
# offset would show up as hours off in the tests.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "timezone": "'Asia/Shanghai'",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: $SIZEAGG_PG_BINDIR, Debian's newest, or PATH."""
    explicit = os.environ.get(PG_BINDIR_VAR)
    candidates = [explicit] if explicit else []
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [str(Path(p).parent) for p in debian]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make test` or `.ci/run`, which "
        "install Debian's `postgresql` package when missing, or set "
        f"{PG_BINDIR_VAR}; `pytest -m 'not postgres'` runs the SQLite half only"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One `initdb` cluster under `root`, reachable on 127.0.0.1:`port` with trust auth."""

    bindir: Path
    root: Path
    port: int = 0
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _as_server_user(self, args: Sequence[str]) -> list[str]:
        if os.geteuid() != 0:
            return list(args)
        return ["runuser", "-u", SERVER_USER, "--", *args]

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = self._as_server_user([str(self.bindir / args[0]), *args[1:]])
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}\n{log}"
            )

    def init(self) -> None:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise PostgresUnavailable(
                    f"running as root, and there is no {SERVER_USER!r} user to run the server as "
                    "(Debian's postgresql package creates it)"
                ) from exc
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# sizeagg test server\n")
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")

    def start(self, attempts: int = 3, port: int | None = None) -> None:
        """Start on a free port (another process may grab it first, so retry), or again on `port`."""
        for attempt in range(1 if port else attempts):
            self.port = port or free_port()
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "start",
                )
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        for mode in ("fast", "immediate"):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", timeout=60)
                return

    def url(self, database: str = "postgres") -> str:
        return f"{DRIVER}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> sa.Engine:
        return sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database (from template0: nothing any test left in template1)."""
        name = f"{prefix}_{next(self._names)}"
        engine = self.admin()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            engine.dispose()
        return name

    def drop_database(self, name: str) -> None:
        engine = self.admin()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            engine.dispose()


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started server in a fresh temporary directory; stopped and removed on exit."""
    server = PostgresServer(bindir=find_bindir(), root=Path(tempfile.mkdtemp(prefix="sizeagg-pg-")))
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


# --------------------------------------------------------------------------- writers made to overlap


def wait_for_blocked(
    engine: sa.Engine, count: int, procs: Sequence[subprocess.Popen[str]], timeout: float = 120
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


def finish(procs: Sequence[subprocess.Popen[str]], timeout: float = 180) -> list[str]:
    """Wait for every writer; each must exit 0. Their standard outputs, in order."""
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}\n{err}"
        outputs.append(out)
    return outputs
