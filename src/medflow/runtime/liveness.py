"""Is a process still there? Identities that survive pid reuse, and files kept fresh.

Shared by the sweep (a trial's worker, its heartbeat file) and the lock files that name
their holder (:mod:`medflow.runtime.lockfile`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ProcessIdentity", "alive", "gone_pid", "read_stripped", "refreshed"]

_log = logging.getLogger(__name__)


@contextmanager
def refreshed(path: Path, interval_s: float, *, create: bool = True) -> Iterator[None]:
    """Touch ``path`` every ``interval_s`` from a daemon thread while the block runs.

    ``create=False`` only updates the mtime of an existing file: a lock file broken by a
    waiter must not come back empty.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                path.touch() if create else os.utime(path)
            except OSError:
                # A missed beat only matters if it lasts the whole grace period.
                _log.warning("could not touch %s", path, exc_info=True)

    thread = threading.Thread(target=beat, name=f"touch {path.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def read_stripped(path: str | Path) -> str:
    """The text of a small file, stripped; "" when it is missing or unreadable."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a Linux process, None if unknown."""
    stat = read_stripped(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return fields[0], fields[19]


@dataclass(frozen=True)
class ProcessIdentity:
    """Identifies a process: a pid means something only on the same host and boot and in
    the same pid namespace (containers), and with the same start time (pid reuse)."""

    host: str
    pid: int
    pid_space: str
    started: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = ""
        stat = _proc_stat(os.getpid())
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_space=f"{read_stripped('/proc/sys/kernel/random/boot_id')}/{namespace}",
            started=stat[1] if stat else "",
        )

    def attrs(self) -> dict[str, Any]:
        """As stored with a trial (Optuna user attrs) or in a lock file."""
        return {
            "worker_host": self.host,
            "worker_pid": self.pid,
            "worker_pid_space": self.pid_space,
            "worker_started": self.started,
        }

    def owns_pid_of(self, attrs: Mapping[str, Any]) -> bool:
        """Whether the pid in ``attrs`` can be looked up from this process."""
        return (
            "worker_pid" in attrs
            and attrs.get("worker_host") == self.host
            and attrs.get("worker_pid_space") == self.pid_space
        )


def alive(pid: int, started: str) -> bool:
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        # A zombie (killed, not yet reaped) runs no code.
        return state not in {"Z", "X"} and (not started or start == started)
    if Path("/proc/self/stat").exists():
        return False  # Linux without /proc/<pid>: no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone_pid(attrs: Mapping[str, Any], me: ProcessIdentity) -> int | None:
    """The pid named in ``attrs`` if it ran where ``me`` can see it and is gone, else None."""
    if me.owns_pid_of(attrs):
        pid = int(attrs["worker_pid"])
        if not alive(pid, attrs.get("worker_started", "")):
            return pid
    return None
