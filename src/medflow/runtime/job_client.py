"""Hand a ``python -m medflow`` command to the workflow's job server, if one is reachable.

Stdlib only: this runs before anything heavy is imported, which is the point. The job runs in
a process the server forks with torch, MLflow and medflow already imported; this process
stays as the job's stand-in for Snakemake: it passes signals on and exits as the job did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

from medflow.runtime.job_wire import ENV_VAR, send_request, socket_path

# Signals Snakemake, SLURM or a terminal send a job; each is passed on to the job once (the
# job runs in its own process group, so a signal to this group does not reach it twice).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# A server still importing answers within seconds; past this the job runs here instead.
START_TIMEOUT_S = 300.0


def run_via_server(argv: list[str]) -> int | None:
    """The job's exit status, or None when no server took it (the caller then runs it)."""
    path = socket_path(os.environ.get(ENV_VAR), socket.gethostname())
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = {"argv": argv, "argv0": sys.argv[0], "cwd": os.getcwd(), "env": dict(os.environ)}
        send_request(sock, request)
        sock.settimeout(START_TIMEOUT_S)
        replies = sock.makefile("rb")
        first = _read(replies)
    except OSError:  # no server (gone, refused, or never answered): run the job here
        sock.close()
        return None
    if first is None or "pid" not in first:
        sock.close()
        return None
    sock.settimeout(None)
    _forward_signals(int(first["pid"]))
    return _exit_status(_read(replies))


def _read(replies) -> dict | None:
    line = replies.readline()
    return json.loads(line) if line else None


def _forward_signals(pid: int) -> None:
    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)


def _exit_status(last: dict | None) -> int:
    """The job's exit code; a job killed by a signal kills this process with it too."""
    if last is not None and "exit" in last:
        return int(last["exit"])
    if last is not None and "signal" in last:
        signum = int(last["signal"])
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    print("medflow: error: the job server lost the job without an exit status", file=sys.stderr)
    return 1
