"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, loopback only.

``postgres_server()`` starts Debian's (or any) PostgreSQL binaries on 127.0.0.1 at a free port
with its unix socket in the temporary folder, creates the requested databases and yields their
URLs; on exit it stops the server (``pg_ctl stop -m fast``, bounded) and removes the folder.
Authentication is ``trust``: nothing but loopback clients can reach it. PostgreSQL refuses to
run as root, so as root the server runs as the ``postgres`` user (via ``runuser``). Where it
cannot run (no binaries, root without a ``postgres`` user) the calling test is skipped with
the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "medflow"
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 30
_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin")


def find_bin_dir() -> Path | None:
    """The folder with initdb/pg_ctl: $PG_BIN, Debian's newest version, or $PATH."""
    if env := os.environ.get("PG_BIN"):
        return Path(env) if (Path(env) / "pg_ctl").exists() else None
    candidates = [Path(p) for pattern in _BIN_GLOBS for p in glob.glob(pattern)]
    candidates = [p for p in candidates if (p / "initdb").exists() and (p / "pg_ctl").exists()]
    if candidates:
        # Highest major version first (/usr/lib/postgresql/15/bin beats .../9/bin).
        return max(candidates, key=lambda p: [int(s) if s.isdigit() else 0 for s in p.parts])
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def skip_reason() -> str | None:
    """Why a server cannot be started here, or None."""
    if find_bin_dir() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found; install postgresql or set PG_BIN"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to drop to the 'postgres' user"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    base: Path  # temporary folder: data/, the socket, server.log
    port: int
    databases: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str, driver: str = "postgresql") -> str:
        """SQLAlchemy URL, e.g. postgresql://medflow@127.0.0.1:54321/optuna."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self.databases}

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def create_database(self, name: str) -> str:
        _run(
            [
                str(self.bin_dir / "createdb"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                name,
            ],
            timeout=30,
        )
        self.databases.append(name)
        return self.url(name)


def _as_owner(cmd: Sequence[str]) -> list[str]:
    """``cmd`` as the postgres user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return list(cmd)


def _run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def _make_base() -> Path:
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="medflow-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    return base


def _start(server: PostgresServer) -> None:
    options = " ".join(
        [
            f"-p {server.port}",
            f"-c listen_addresses={server.host}",
            f"-c unix_socket_directories='{server.base}'",
            "-c max_connections=200",
            # Throwaway data: durability only costs time.
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
    )
    _run(
        _as_owner(
            [
                str(server.bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(server.data_dir),
                "-l",
                str(server.log_file),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-o",
                options,
            ]
        ),
        timeout=_START_TIMEOUT_S + 15,
    )


def _stop(server: PostgresServer) -> None:
    """pg_ctl stop -m fast; if that fails, kill the postmaster (bounded either way)."""
    if not (server.data_dir / "postmaster.pid").exists():
        return
    try:
        _run(
            _as_owner(
                [
                    str(server.bin_dir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(server.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(_STOP_TIMEOUT_S),
                ]
            ),
            timeout=_STOP_TIMEOUT_S + 15,
        )
    except (RuntimeError, subprocess.TimeoutExpired):
        try:
            pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)  # its backends exit when the postmaster is gone
        except (OSError, ValueError, IndexError):
            pass


@contextmanager
def postgres_server(databases: Sequence[str] = ("optuna", "mlflow")) -> Iterator[PostgresServer]:
    """A running server with ``databases`` created; skips the calling test if impossible."""
    if reason := skip_reason():
        pytest.skip(reason)
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    base = _make_base()
    server = PostgresServer(bin_dir=bin_dir, base=base, port=0)
    try:
        _run(
            _as_owner(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(server.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            timeout=120,
        )
        for attempt in range(3):  # another process may take the free port before we bind it
            server.port = free_port()
            try:
                _start(server)
                break
            except (RuntimeError, subprocess.TimeoutExpired):
                _stop(server)
                if attempt == 2:
                    raise RuntimeError(f"PostgreSQL did not start:\n{server.log_tail()}") from None
        for name in databases:
            server.create_database(name)
        yield server
    finally:
        _stop(server)
        shutil.rmtree(base, ignore_errors=True)
