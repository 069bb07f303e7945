"""A real ``mlflow server`` for tests, on any backend store (SQLite, PostgreSQL, ...).

``mlflow_server(backend_store_uri, artifacts_dir)`` starts the virtualenv's ``mlflow server``
on a free loopback port, serving (proxying) artifacts from ``artifacts_dir``, waits until
``/health`` answers (bounded), yields an :class:`MlflowServer` with its ``url`` and stops the
whole process group (the server and its workers) on exit. Its output goes to a log file whose
tail is in every error.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

_STOP_TIMEOUT_S = 15


def mlflow_executable() -> str:
    """``mlflow`` next to this interpreter (the virtualenv's), else the one on $PATH."""
    beside = Path(sys.executable).parent / "mlflow"
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if found is None:
        raise FileNotFoundError("no mlflow executable next to the interpreter or on PATH")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class MlflowServer:
    url: str  # http://127.0.0.1:<port>, the tracking URI for clients
    process: subprocess.Popen
    log_file: Path
    backend_store_uri: str
    artifacts_dir: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after a grace period."""
        if self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, _STOP_TIMEOUT_S), (signal.SIGKILL, _STOP_TIMEOUT_S)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers left behind in the group (the leader already gone) must not outlive the test.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 2,
    startup_timeout_s: float = 120,
    log_file: Path | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[MlflowServer]:
    """A running server; RuntimeError (with the log's tail) if it is not healthy in time."""
    artifacts_dir = Path(artifacts_dir).resolve()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_file = Path(log_file) if log_file else artifacts_dir.parent / "mlflow-server.log"
    port = port or free_port(host)
    cmd = [
        mlflow_executable(),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra_args,
    ]
    # The server must not pick up a client's settings (e.g. a tracking URI) from the test run.
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    # No GenAI job runner (a dozen extra processes, half a minute of start-up on two cores).
    server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    server_env.update(env or {})
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
            cwd=artifacts_dir.parent,  # where a default ./mlruns or ./mlflow.db would land
            start_new_session=True,  # its own process group, killed as a whole
        )
    server = MlflowServer(
        f"http://{host}:{port}", process, log_file, backend_store_uri, artifacts_dir
    )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.healthy():
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited {process.returncode} before it was healthy:\n"
                    f"{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not healthy within {startup_timeout_s:.0f}s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.25)
        yield server
    finally:
        server.stop()
