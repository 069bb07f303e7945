"""The job server: ``python -m medflow`` run in a process forked from a warmed-up server.

One real server for the module (its warm-up takes seconds); each test runs real
``python -m medflow`` clients against it. A config file that is a FIFO holds a job open
until the test is done with it: ``medflow validate`` blocks reading it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medflow.runtime.job_server import JobServer
from medflow.runtime.job_wire import ENV_VAR
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the job server is Linux-only")
WAIT_S = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The server's address and log; this process's environment is left as it was."""
    log = tmp_path_factory.mktemp("job_server") / "job_server.log"
    before = os.environ.get(ENV_VAR)
    job_server = JobServer()
    job_server.start(log)
    address = os.environ[ENV_VAR]
    if before is None:
        del os.environ[ENV_VAR]
    else:
        os.environ[ENV_VAR] = before
    yield address, log
    job_server.stop()


def _client(address: str, *argv: str, cwd: Path = REPO, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "medflow", *argv],
        cwd=cwd,
        env={**os.environ, ENV_VAR: address, "OMP_NUM_THREADS": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _jobs(log: Path, marker: str) -> list[tuple[int, int]]:
    """(pid, torch threads) of each job the server ran whose command contains ``marker``."""
    lines = log.read_text().splitlines() if log.exists() else []
    found = (re.search(r"job (\d+): (.*); (\d+) torch threads$", line) for line in lines)
    return [(int(m[1]), int(m[3])) for m in found if m and marker in m[2]]


def _wait_for_job(log: Path, marker: str) -> int:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if jobs := _jobs(log, marker):
            return jobs[0][0]
        time.sleep(0.1)
    raise AssertionError(f"no job with {marker!r} in {log} within {WAIT_S:.0f} s")


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {pid} still runs {WAIT_S:.0f} s after its client ended")


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "held.yaml"
    os.mkfifo(path)
    return path


def test_a_command_runs_forked_with_the_clients_streams_directory_and_threads(server, tmp_path):
    address, log = server
    config = tmp_path / "demo.yaml"
    config.write_text((REPO / "config" / "config.yaml").read_text())
    done = _client(address, "validate", "--config", config.name, cwd=tmp_path)
    out, err = done.communicate(timeout=WAIT_S)
    assert done.returncode == 0, err
    assert out.strip().startswith("demo.yaml: valid (")  # relative to the client's directory
    assert [threads for _, threads in _jobs(log, str(config.name))] == [1]

    missing = tmp_path / "missing.yaml"
    failed = _client(address, "validate", "--config", str(missing), OMP_NUM_THREADS="2")
    out, err = failed.communicate(timeout=WAIT_S)
    assert failed.returncode == 2
    assert err.strip().splitlines()[-1] == f"medflow: error: config file not found: {missing}"
    assert [threads for _, threads in _jobs(log, str(missing))] == [2]


def test_a_signal_to_the_client_reaches_the_job_once_and_ends_both(server, tmp_path):
    address, log = server
    held = _fifo(tmp_path)
    client = _client(address, "validate", "--config", str(held))
    pid = _wait_for_job(log, str(held))
    client.send_signal(signal.SIGTERM)
    client.communicate(timeout=WAIT_S)
    assert client.returncode == -signal.SIGTERM  # the job died of it, and so did its client
    _wait_gone(pid)


def test_a_client_killed_outright_takes_its_job_down(server, tmp_path):
    address, log = server
    held = _fifo(tmp_path)
    client = _client(address, "validate", "--config", str(held))
    pid = _wait_for_job(log, str(held))
    client.kill()
    client.wait(timeout=WAIT_S)
    _wait_gone(pid)


def test_a_job_runs_in_its_own_process_when_the_server_cannot_take_it(server, tmp_path):
    address, log = server
    config = str(REPO / "config" / "config.yaml")
    gone = _client(f"{address}.gone", "validate", "--config", config)
    other_host = _client(f"elsewhere:{address.partition(':')[2]}", "validate", "--config", config)
    hash_seed = _client(address, "validate", "--config", config, PYTHONHASHSEED="7")
    for client in (gone, other_host, hash_seed):
        out, err = client.communicate(timeout=WAIT_S)
        assert client.returncode == 0, err
        assert "valid (" in out
    # PYTHONHASHSEED acts at interpreter start: the server sent that job back.
    assert not _jobs(log, config)


def test_a_server_that_cannot_listen_leaves_jobs_to_start_cold(tmp_path, monkeypatch, capsys):
    deep = tmp_path / ("d" * 100)  # a socket path this long cannot be bound
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert JobServer().start(tmp_path / "job_server.log") is False
    assert ENV_VAR not in os.environ
    assert "medflow: warning: no job server (" in capsys.readouterr().err
    assert list(deep.iterdir()) == []  # its folder is gone too


def test_a_server_only_where_jobs_run_here_and_it_is_not_turned_off(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert JobServer.wanted(local_exec=True)
    assert not JobServer.wanted(local_exec=False)  # e.g. the SLURM executor
    monkeypatch.setenv(ENV_VAR, "off")
    assert not JobServer.wanted(local_exec=True)
