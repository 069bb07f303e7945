"""A fork server for one workflow run: each job starts with torch, MLflow and medflow imported.

Every Snakemake job is a fresh ``python -m medflow`` that would import torch, MLflow (with
pandas, SQLAlchemy, alembic), and on its first logged model ``torch.export`` and MLflow's
installed-package scan: about 4 s of a CPU's time before it does anything, and 3 s more for
the model. The Snakefile's ``onstart`` starts this server on the machine Snakemake runs jobs
on; ``python -m medflow`` then sends its command here (medflow.runtime.job_client), and the
server forks a process that runs it with all of that done once.

A forked job behaves as a fresh process would: it takes the client's argv, working
directory, environment, standard streams and torch thread count; it runs in its own process
group, gets the signals the client receives, is killed when the client is, exits with the
command's status, and runs atexit handlers. Jobs whose import-time environment differs from
the server's (``PYTHON*``, ``TORCH*``, ...) are sent back to run in their own process.

Linux only (fork after torch's import is not safe on macOS); ``MEDFLOW_JOB_SERVER=off`` in the
environment of ``snakemake`` turns it off.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medflow.runtime.job_wire import ENV_VAR, address, receive_request, send_message

# Read at import time by Python, torch or their libraries: a job whose value differs from the
# server's would not get it in a forked process. Thread counts are applied after the fork.
_IMPORT_TIME_ENV_PREFIXES = ("PYTHON", "TORCH", "PYTORCH", "LD_", "KMP_", "GOMP_", "MKL_", "OMP_")
_APPLIED_AFTER_FORK = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_PARENT_POLL_S = 1.0
_REQUEST_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0


class JobServer:
    """The server process of one workflow run, started and stopped by the Snakefile."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.folder: Path | None = None

    @staticmethod
    def wanted(local_exec: bool) -> bool:
        """Jobs run on this machine, on Linux 5.3+ (pidfd), and the user did not turn it off."""
        if not local_exec or sys.platform != "linux" or os.environ.get(ENV_VAR) == "off":
            return False
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (AttributeError, OSError):
            return False
        return True

    def start(self, log_file: Path) -> bool:
        """Start the server (it imports in the background) and point jobs at it; False, with
        a warning, where it cannot start (jobs then start cold, as without it).

        The socket listens before this returns: a job started at once waits in its backlog.
        """
        try:
            self.folder = Path(tempfile.mkdtemp(prefix="medflow-jobs-"))
            path = self.folder / "server.sock"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                listener.bind(str(path))  # fails on a socket path over ~100 bytes ($TMPDIR)
                listener.listen(128)
                command = [sys.executable, "-m", "medflow.runtime.job_server", str(path)]
                with open(log_file, "ab") as log:
                    self.process = subprocess.Popen(
                        [*command, str(listener.fileno()), str(os.getpid())],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        pass_fds=[listener.fileno()],
                    )
        except OSError as exc:
            print(f"medflow: warning: no job server ({exc}); jobs start cold", file=sys.stderr)
            self.stop()
            return False
        os.environ[ENV_VAR] = address(socket.gethostname(), str(path))
        return True

    def stop(self) -> None:
        """Stop taking jobs; jobs already running finish on their own."""
        os.environ.pop(ENV_VAR, None)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.folder is not None:
            (self.folder / "server.sock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()


# ---- the server process


def warm_ups() -> Iterator[Callable[[], None]]:
    """What jobs would otherwise each do, most needed first; the server answers waiting jobs
    between steps."""

    def imports() -> None:
        import medflow.cli
        import medflow.stages.pretrain
        import medflow.stages.refine
        import medflow.stages.sweep  # noqa: F401

    def stage_imports() -> None:
        import medflow.stages.analyze
        import medflow.stages.classics
        import medflow.stages.evaluate
        import medflow.stages.prepare
        import medflow.stages.pretrain_shared  # noqa: F401

    yield imports
    yield _open_throwaway_store
    yield _save_throwaway_model
    yield _draw_throwaway_figure
    yield stage_imports


def _open_throwaway_store() -> None:
    """Import what opening the SQLite store imports (SQLAlchemy, alembic), on a store of its
    own in a folder deleted after."""
    from medflow.tracking.client import Tracker

    with tempfile.TemporaryDirectory() as tmp:
        Tracker(f"sqlite:///{Path(tmp) / 'store'}", Path(tmp) / "artifacts")


def _save_throwaway_model() -> None:
    """``torch.export`` and MLflow's installed-package scan, done by the first model a process
    saves (3 s), done here once, through the jobs' own save path."""
    import torch

    from medflow.tracking.models import model_signature, save_model_folder

    model = torch.nn.Linear(2, 1).eval()
    example = torch.zeros(2, 2).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        save_model_folder(Path(tmp) / "model", model, model_signature(model, example), example)


def _draw_throwaway_figure() -> None:
    """Matplotlib's Agg backend and Pillow's PNG plugins, loaded by the first figure saved."""
    from io import BytesIO

    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1])
    figure.savefig(BytesIO(), format="png")


class _Server:
    def __init__(self, listener: socket.socket, parent_pid: int) -> None:
        self.listener = listener
        self.parent_pid = parent_pid
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.jobs: dict[int, socket.socket] = {}  # pid -> the client's connection
        self.import_env = {k: v for k, v in os.environ.items() if _import_time(k)}
        self.default_threads: int | None = None  # torch's, in a process without OMP_NUM_THREADS
        self.stopping = False

    def serve(self) -> None:
        for number, warm_up in enumerate(warm_ups()):
            if number:  # jobs wait for the imports, then for one more step at most
                self.handle_events(timeout=0)
            if self.stopping:
                break
            started = time.perf_counter()
            warm_up()
            _say(f"warm-up {warm_up.__name__} took {time.perf_counter() - started:.2f} s")
        while not self.stopping:
            self.handle_events(timeout=_PARENT_POLL_S)
        self.selector.unregister(self.listener)
        self.listener.close()  # no new jobs; those running still get their status
        while self.jobs:
            self.handle_events(timeout=_PARENT_POLL_S)

    def handle_events(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            if key.data == "accept":
                self.accept()
            else:
                self.reap(key.data)
        if os.getppid() != self.parent_pid:  # Snakemake is gone, and its jobs with it
            self.stopping = True

    def accept(self) -> None:
        """Every connection waiting (jobs queue up while the server warms up)."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self.take(conn)

    def take(self, conn: socket.socket) -> None:
        conn.settimeout(_REQUEST_TIMEOUT_S)  # a client that never sends holds up no one
        try:
            request, fds = receive_request(conn)
        except (OSError, ValueError) as exc:
            _say(f"bad request: {exc}")
            conn.close()
            return
        conn.settimeout(None)
        try:
            differs = sorted(
                k
                for k in self.import_env.keys() | request["env"].keys()
                if _import_time(k) and self.import_env.get(k) != request["env"].get(k)
            )
            if differs:
                why = f"environment differs: {', '.join(differs)}"
                _say(f"sent a job back, its {why}")
                _answer(conn, {"fallback": why})
                conn.close()
                return
            self.fork(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def fork(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        """Run the request in a forked process; the client runs it itself where that fails."""
        if self.default_threads is None:
            import torch

            self.default_threads = torch.get_num_threads()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # memory, process limit
            _say(f"could not start a job: {exc}")
            _answer(conn, {"fallback": str(exc)})
            conn.close()
            return
        if pid == 0:  # the job: whatever happens, it never returns into the server's loop
            code = 1
            try:
                self.close_all_but(conn)
                code = _run_job(conn, request, fds, self.default_threads)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        try:
            watch = os.pidfd_open(pid)
        except OSError as exc:  # out of descriptors: stop the job before it does anything
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _say(f"could not watch a job: {exc}")
            _answer(conn, {"fallback": str(exc)})
            conn.close()
            return
        self.jobs[pid] = conn
        self.selector.register(watch, selectors.EVENT_READ, pid)
        _answer(conn, {"pid": pid})  # a client already gone: the job sees it and ends

    def close_all_but(self, conn: socket.socket) -> None:
        """In a forked job: none of the server's sockets and descriptors but its client's."""
        for key in list(self.selector.get_map().values()):
            if key.data != "accept":
                os.close(key.fd)
        self.selector.close()
        self.listener.close()
        for other in self.jobs.values():
            other.close()

    def reap(self, pid: int) -> None:
        key = next(k for k in self.selector.get_map().values() if k.data == pid)
        self.selector.unregister(key.fileobj)
        os.close(key.fd)
        _, status = os.waitpid(pid, 0)
        conn = self.jobs.pop(pid)
        if os.WIFSIGNALED(status):  # a job that exits says so itself, before exiting
            _answer(conn, {"signal": os.WTERMSIG(status)})
        conn.close()


def _answer(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        send_message(conn, message)


def _import_time(key: str) -> bool:
    return key.startswith(_IMPORT_TIME_ENV_PREFIXES) and key not in _APPLIED_AFTER_FORK


def _say(text: str) -> None:
    print(_said(text), file=sys.stderr)
    sys.stderr.flush()


def _said(text: str) -> str:
    return f"{time.strftime('%H:%M:%S')} job server: {text}"


# ---- the forked job


def _run_job(
    conn: socket.socket, request: dict[str, Any], fds: list[int], default_threads: int
) -> int:
    """In the forked process: become the client's command, run it, report its exit status."""
    os.setpgid(0, 0)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with_client(conn)
    _take_over_process(request, fds, default_threads)
    code = _run_cli(request["argv"])
    _finish()
    _answer(conn, {"exit": code})
    return code


def _die_with_client(conn: socket.socket) -> None:
    """A client killed outright (SIGKILL) takes the job down with it, as it would its own
    process."""

    def watch() -> None:
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="client watch", daemon=True).start()


def _take_over_process(request: dict[str, Any], fds: list[int], default_threads: int) -> None:
    """The client's streams, directory, environment, argv and thread count."""
    import importlib

    import torch
    from threadpoolctl import threadpool_limits

    server_log = os.dup(2)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own streams
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["argv0"], *request["argv"]]
    sys.path[0] = request["cwd"]  # as `python -m` puts it: a user's model module is found
    importlib.invalidate_caches()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    threads_now = int(threads) if threads.isdigit() and int(threads) > 0 else default_threads
    torch.set_num_threads(threads_now)
    threadpool_limits(threads_now, user_api="blas")  # NumPy's BLAS read the variable at import
    with open(server_log, "w") as log:
        argv = request["argv"]  # the --spec JSON (kilobytes of config) is in the job's log
        command = shlex.join(
            "{...}" if i and argv[i - 1] == "--spec" else arg for i, arg in enumerate(argv)
        )
        print(
            _said(f"job {os.getpid()}: {command}; {torch.get_num_threads()} torch threads"),
            file=log,
        )
    _reseed_numpy()


def _reseed_numpy() -> None:
    """A fresh process seeds NumPy's global generator from the OS; forked ones would share."""
    import numpy as np

    np.random.seed()


def _run_cli(argv: list[str]) -> int:
    from medflow.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:
        traceback.print_exc()
        return 1


def _finish() -> None:
    """What interpreter shutdown does: join threads, run atexit handlers, flush."""
    import atexit

    threading._shutdown()  # type: ignore[attr-defined]  # as multiprocessing's children do
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medflow.runtime.job_server")
    parser.add_argument("socket", help="the Unix socket's path, removed on exit")
    parser.add_argument("fd", type=int, help="the socket, bound and listening")
    parser.add_argument("parent", type=int, help="exit when this process (Snakemake) is gone")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.fd)
    listener.setblocking(False)
    server = _Server(listener, args.parent)

    def stop(signum, frame):
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _say(f"listening on {args.socket}")
    try:
        server.serve()
    finally:
        listener.close()
        Path(args.socket).unlink(missing_ok=True)
        _say("stopped")


if __name__ == "__main__":
    main()
