"""Real Dagster processes (webserver, daemon, code servers) for end-to-end tests.

`start_dagster()` starts `dagster dev` — or, with `services=True`, the production
shape: `dagster-webserver` and `dagster-daemon` as two services — each in its own
process group on a free port with a temporary DAGSTER_HOME, and waits until the
code location is loaded and the daemons report healthy; `DagsterProcesses.stop()`
terminates every group (code servers and run workers outlive their parent by
seconds) and waits until nothing of them is left. Any test module can build a
fixture on it:

    @pytest.fixture(scope="session")
    def dagster(tmp_path_factory):
        with running_dagster(tmp_path_factory.mktemp("dagster_home"), env) as d:
            yield d

Pitfalls handled: SIGINT is reset to default in the child
(`dagster dev` maps SIGTERM to its SIGINT handler, which is ignored when inherited
as ignored); the group is killed, never only the parent; the port is free and
fresh per start; DAGSTER_HOME is explicit (unset, `dagster dev` deletes its state).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

from sizeagg_pipeline_tests.support.paths import BIN, ROOT

T = TypeVar("T")

# The test instance: runs leave the queue within a second, run monitoring polls
# often, sensors are evaluated in threads, no telemetry.
TEST_INSTANCE_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    max_concurrent_runs: 6
run_monitoring:
  enabled: true
  # A run over a year of daily partitions logs ~1,500 planned events before it
  # starts; on a busy 2-core machine that took more than 180 s.
  start_timeout_seconds: 600
  cancel_timeout_seconds: 60
  max_runtime_seconds: 900
  poll_interval_seconds: 5
sensors:
  use_threads: true
  num_workers: 4
telemetry:
  enabled: false
"""

REQUIRED_DAEMONS = ("SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `condition` until it returns something truthy (not None); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, fields after the command name) of every process, from /proc."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            yield int(entry.name), stat.rsplit(")", 1)[1].split()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    return [pid for pid, fields in _proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (to kill a run worker's whole tree)."""
    parents: dict[int, list[int]] = {}
    for child, fields in _proc_stats():
        parents.setdefault(int(fields[1]), []).append(child)
    result, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            result.append(child)
            todo.append(child)
    return result


def start_group(args: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A process in its own group (stop it with its children), SIGINT restored (see above)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _group_gone(process: subprocess.Popen[bytes]) -> bool:
    process.poll()  # reap the leader: a zombie still counts as a group member
    return not _group_alive(process.pid)


def stop_group(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the whole group, then SIGKILL what is left; return when nothing is."""
    if _group_gone(process):
        return
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _group_gone(process) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not _group_gone(process):
        os.killpg(process.pid, signal.SIGKILL)
        wait_for(lambda: _group_gone(process), timeout=10, what="the killed process group to exit")


@dataclass
class DagsterProcesses:
    home: Path
    port: int
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]
    log_paths: list[Path]
    location: str = "sizeagg"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": "__repository__"}

    def log_tail(self, chars: int = 6000) -> str:
        tails = []
        for path in self.log_paths:
            try:
                tails.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-chars:])
            except OSError:
                continue
        return "\n".join(tails)

    def _gone(self) -> bool:
        return all(_group_gone(p) for p in self.processes)

    def stop(self, grace: float = 20) -> None:
        for process in self.processes:
            stop_group(process, grace)


def _program(process: subprocess.Popen[bytes]) -> str:
    """The executable a process was started with (`start_group` passes a list of arguments)."""
    args = process.args
    if isinstance(args, str | bytes | os.PathLike):
        return os.fsdecode(args)
    return os.fsdecode(args[0])


def _ready(proc: DagsterProcesses) -> bool:
    for process in proc.processes:
        if process.poll() is not None:
            raise RuntimeError(f"{_program(process)} exited with {process.returncode}:\n{proc.log_tail()}")
    try:
        data = proc.graphql(
            """{
              workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                locationOrLoadError { __typename ... on PythonError { message } } } } }
              instance { daemonHealth { allDaemonStatuses { daemonType healthy } } }
            }"""
        )
    except (requests.ConnectionError, requests.Timeout, requests.HTTPError):
        return False
    entries = data["workspaceOrError"].get("locationEntries", [])
    for entry in entries:
        error = entry.get("locationOrLoadError") or {}
        if error.get("__typename") == "PythonError":
            raise RuntimeError(f"code location failed to load: {error['message']}")
    loaded = any(e["name"] == proc.location and e["loadStatus"] == "LOADED" for e in entries)
    healthy = {d["daemonType"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"] if d["healthy"]}
    return loaded and set(REQUIRED_DAEMONS) <= healthy


def start_dagster(
    home: Path, env: Mapping[str, str], *, services: bool = False, timeout: float = 180
) -> DagsterProcesses:
    """Dagster on a free port with `home` as DAGSTER_HOME (its dagster.yaml written if absent)."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(TEST_INSTANCE_YAML)
    port = free_port()
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    web = ["-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    if services:
        # Both services would create a fresh instance's SQLite tables at once and one of
        # them can lose that race ("table instigators already exists"): create them first.
        create = "import sys, dagster as dg; dg.DagsterInstance.from_config(sys.argv[1]).dispose()"
        subprocess.run([str(BIN / "python"), "-c", create, str(home)], env=full_env, check=True, timeout=120)
        commands = {
            "webserver": [str(BIN / "dagster-webserver"), *web],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        }
    else:
        commands = {"dagster-dev": [str(BIN / "dagster"), "dev", *web]}
    proc = DagsterProcesses(home=home, port=port, env=full_env, processes=[], log_paths=[])
    try:
        for name, args in commands.items():
            proc.log_paths.append(home / f"{name}.log")
            proc.processes.append(start_group(args, full_env, proc.log_paths[-1]))
        wait_for(lambda: _ready(proc), timeout=timeout, what="dagster to load and its daemons to be healthy")
    except BaseException:
        proc.stop()
        raise
    return proc


@contextmanager
def running_dagster(
    home: Path, env: Mapping[str, str], *, services: bool = False
) -> Iterator[DagsterProcesses]:
    """Start, yield, and always stop (also when pytest itself gets SIGTERM)."""
    previous = signal.getsignal(signal.SIGTERM)

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    proc = start_dagster(home, env, services=services)
    try:
        yield proc
    finally:
        proc.stop()
        signal.signal(signal.SIGTERM, previous)
        assert proc._gone(), "dagster processes left running"
