"""The claim lock file: held by real processes, terminated and killed while holding it."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medflow.runtime.lockfile import HolderLock

WAIT_S = 60  # upper bound for any wait on a child process
HOLD_FOREVER_S = 3600


def _start_holder(lock: Path, grace_s: float, hold_s: float, marker: Path | None = None):
    """A child that takes the lock, says so on stdout, holds it ``hold_s``, then releases it."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from medflow.runtime.lockfile import HolderLock
        with HolderLock(Path({str(lock)!r}), {grace_s!r}).held():
            print("held", flush=True)
            time.sleep({hold_s!r})
            marker = {str(marker) if marker else None!r}
            if marker:
                Path(marker).write_text("done")
        print("released", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _holder_pid(lock: Path) -> int:
    return json.loads(lock.read_text())["worker_pid"]


def test_sigterm_while_holding_finishes_the_hold_releases_then_dies(tmp_path):
    lock = tmp_path / "claim.lock"
    marker = tmp_path / "holder_done"
    child = _start_holder(lock, grace_s=90, hold_s=1.0, marker=marker)
    assert _holder_pid(lock) == child.pid
    child.send_signal(signal.SIGTERM)
    # Still the default action (death by SIGTERM), only after the locked work and the release.
    assert child.wait(timeout=WAIT_S) == -signal.SIGTERM
    assert marker.read_text() == "done"
    assert child.stdout.read() == ""  # died before the code after the block
    assert not lock.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["holder_done"]  # no draft left either


def test_sigterm_while_waiting_ends_the_wait_and_leaves_the_holders_lock(tmp_path):
    lock = tmp_path / "claim.lock"
    holder = _start_holder(lock, grace_s=90, hold_s=HOLD_FOREVER_S)
    try:
        code = (
            "from pathlib import Path; from medflow.runtime.lockfile import HolderLock\n"
            f"with HolderLock(Path({str(lock)!r}), 90).held(): print('held', flush=True)"
        )
        waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + WAIT_S
        while len(list(tmp_path.glob("claim.lock.*.new"))) == 0:  # the waiter's draft
            assert time.monotonic() < deadline and waiter.poll() is None
            time.sleep(0.05)
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=WAIT_S) == -signal.SIGTERM
        assert waiter.stdout.read() == ""  # it never got the lock
        assert _holder_pid(lock) == holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.timeout(WAIT_S)  # waiting out the grace period would hang
def test_lock_of_a_killed_holder_is_broken_at_once_not_after_the_grace_period(tmp_path, caplog):
    lock = tmp_path / "claim.lock"
    child = _start_holder(lock, grace_s=HOLD_FOREVER_S, hold_s=HOLD_FOREVER_S)
    child.kill()
    child.wait()
    assert lock.exists()  # SIGKILL: nothing ran to release it
    caplog.set_level(logging.WARNING, logger="medflow.runtime.lockfile")
    with HolderLock(lock, grace_s=HOLD_FOREVER_S).held():  # a grace-period wait would time out
        assert _holder_pid(lock) != child.pid
    assert f":{child.pid} is gone" in caplog.text
    assert not lock.exists()


def test_live_holder_that_refreshes_is_waited_for_past_the_grace_period(tmp_path, caplog):
    lock = tmp_path / "claim.lock"
    marker = tmp_path / "holder_done"
    # Holds 2 s with a 0.6 s grace: only the holder's refreshes keep the lock from being broken.
    holder = _start_holder(lock, grace_s=0.6, hold_s=2.0, marker=marker)
    caplog.set_level(logging.WARNING, logger="medflow.runtime.lockfile")
    with HolderLock(lock, grace_s=0.6).held():
        assert marker.exists()
    assert holder.wait(timeout=WAIT_S) == 0
    assert "broken" not in caplog.text


def test_unrefreshed_lock_without_a_holder_is_broken_after_the_grace_period(tmp_path, caplog):
    lock = tmp_path / "claim.lock"
    lock.touch()  # the empty file an older medflow (Optuna's O_EXCL lock) left behind
    caplog.set_level(logging.WARNING, logger="medflow.runtime.lockfile")
    with HolderLock(lock, grace_s=0.5).held():
        assert json.loads(lock.read_text())["worker_pid"] > 0
    assert "not refreshed for" in caplog.text


@pytest.mark.parametrize("holders", [4])
def test_concurrent_holders_never_overlap(tmp_path, holders):
    lock = tmp_path / "claim.lock"
    log = tmp_path / "log"
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from medflow.runtime.lockfile import HolderLock
        for _ in range(25):
            with HolderLock(Path({str(lock)!r}), 90).held():
                with open({str(log)!r}, "a") as f:
                    f.write(f"in {{os.getpid()}}\\n"); f.flush()
                    time.sleep(0.002)
                    f.write(f"out {{os.getpid()}}\\n")
        """
    )
    children = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(holders)]
    assert [c.wait(timeout=WAIT_S) for c in children] == [0] * holders
    lines = log.read_text().split()
    events = list(zip(lines[::2], lines[1::2], strict=True))
    assert len(events) == 2 * 25 * holders
    # Every "in" is followed by the same process's "out": no two holders at once.
    for (kind_in, pid_in), (kind_out, pid_out) in zip(events[::2], events[1::2], strict=True):
        assert (kind_in, kind_out, pid_in) == ("in", "out", pid_out)
    assert not lock.exists()


def test_sigterm_while_the_journal_lock_is_held_waits_for_its_release(tmp_path):
    journal = tmp_path / "optuna.journal"
    marker = tmp_path / "written"
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from optuna.storages.journal._file import get_lock_file
        from medflow.runtime.lockfile import SignalSafeJournalLock
        with get_lock_file(SignalSafeJournalLock({str(journal)!r})):  # as Optuna's writes do
            print("held", flush=True)
            time.sleep(1.0)
            Path({str(marker)!r}).write_text("done")
        print("released", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    assert Path(f"{journal}.lock").exists()
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=WAIT_S) == -signal.SIGTERM
    assert marker.read_text() == "done"
    assert child.stdout.read() == ""
    assert not Path(f"{journal}.lock").exists()  # Optuna's lock file, left by plain SIGTERM
