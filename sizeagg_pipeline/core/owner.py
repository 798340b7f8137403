"""Which process runs an in-process execution, and whether it is still alive.

`sizeagg run` executes its Dagster runs in its own process: no run launcher or code
server watches them, so if the process is killed its runs stay STARTED and keep
their concurrency slots. Each such run records its owner — host name, pid, the
process's start time as the kernel reports it (a pid reused by a later process has
another start time) and the pid namespace the pid belongs to (the kernel's boot id
and namespace: two containers, or two machines, may share a host name) — so anyone
can tell a dead owner from a slow one: in the same pid namespace by asking the
kernel, elsewhere by the owner's heartbeat.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start(pid: int) -> str | None:
    """When process `pid` started (ISO UTC, to 10 ms), or None when there is no such live process.

    Read from /proc (Linux): field 22 of /proc/<pid>/stat is the start in clock ticks
    after boot. A zombie (killed, not yet reaped by its parent) counts as gone.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = _boot_time()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds")


@functools.cache
def pid_namespace() -> str:
    """This kernel boot and pid namespace: where a pid means the same process as here."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot_id}/{namespace}"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str  # process_start(pid) when it registered
    namespace: str  # pid_namespace() of the process

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid) or "", pid_namespace())

    def is_local(self) -> bool:
        """Its pid means the same here: the kernel can say whether it is alive."""
        return self.host == socket.gethostname() and self.namespace == pid_namespace()

    def alive_here(self) -> bool:
        """The process still runs on this host (same pid, same start time)."""
        return process_start(self.pid) == self.started

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"

    # `sizeagg_executions.owner` keeps the four fields as one text (none holds a space).
    def dump(self) -> str:
        return f"{self.host} {self.pid} {self.started or '-'} {self.namespace or '-'}"

    @classmethod
    def load(cls, text: str) -> Owner:
        host, pid, started, namespace = text.split(" ")
        return cls(host, int(pid), started.strip("-"), namespace.strip("-"))
