"""An exclusive lock file that names its holder, safe for processes on several hosts.

The lock is taken by hard-linking a file that already holds the holder's identity to the
lock path: ``link(2)`` is atomic on NFS, Lustre and GPFS, where ``flock``/``fcntl`` locks are
unsupported or silently node-local. Unlike a kernel lock the file outlives a killed holder,
so a waiter breaks it

* at once when the holder ran where the waiter can see its pid (same host, boot and pid
  namespace) and is gone: SIGKILL, the OOM killer;
* otherwise when the file's mtime, which the holder refreshes from a thread, has not changed
  for ``grace_s``.

SIGTERM and SIGINT that arrive while the lock is held are delivered when it is released, so a
terminated holder never leaves the lock behind; one that arrives while waiting ends the wait.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from optuna.storages.journal import JournalFileOpenLock

from medflow.runtime.interrupts import DeferredSignals, signals_deferred
from medflow.runtime.liveness import ProcessIdentity, gone_pid, read_stripped, refreshed

__all__ = ["HolderLock", "SignalSafeJournalLock"]

_log = logging.getLogger(__name__)

_MAX_POLL_S = 0.25


class _WaitInterrupted(Exception):
    """A deferred signal ended the wait; delivering it on the way out does the rest."""


class HolderLock:
    """Exclusive across processes and hosts that share the directory of ``path``."""

    def __init__(self, path: Path, grace_s: float) -> None:
        self.path = Path(path)
        self.grace_s = grace_s

    @contextmanager
    def held(self) -> Iterator[None]:
        with signals_deferred() as deferred:
            mine = self._acquire(deferred)
            try:
                with refreshed(self.path, self.grace_s / 6, create=False):
                    yield
            finally:
                self._release(mine)

    def _acquire(self, deferred: DeferredSignals) -> str:
        me = ProcessIdentity.current()
        mine = json.dumps({**me.attrs(), "token": uuid.uuid4().hex}, sort_keys=True)
        draft = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.new")
        draft.write_text(mine)
        try:
            poll_s, seen_mtime, unchanged_since = 0.001, None, time.monotonic()
            while True:
                if deferred.interrupting:
                    raise _WaitInterrupted(f"stopped waiting for {self.path}")
                try:
                    os.link(draft, self.path)
                    return mine
                except FileExistsError:
                    if draft.stat().st_nlink == 2:  # NFS: linked, but the reply was lost
                        return mine
                holder = read_stripped(self.path)
                try:
                    mtime = self.path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile
                if mtime != seen_mtime:
                    seen_mtime, unchanged_since = mtime, time.monotonic()
                reason = self._stale_reason(holder, me, time.monotonic() - unchanged_since)
                if reason is not None:
                    self._break(holder, reason)
                    continue
                time.sleep(poll_s)
                poll_s = min(poll_s * 2, _MAX_POLL_S)
        finally:
            draft.unlink(missing_ok=True)

    def _stale_reason(self, holder: str, me: ProcessIdentity, idle_s: float) -> str | None:
        try:
            attrs = json.loads(holder)
        except ValueError:
            attrs = None  # written by something else (an older medflow): the grace period only
        if isinstance(attrs, dict) and (pid := gone_pid(attrs, me)) is not None:
            return f"its holder {attrs['worker_host']}:{pid} is gone"
        if idle_s > self.grace_s:
            return f"not refreshed for {idle_s:.0f}s"
        return None

    def _break(self, holder: str, reason: str) -> None:
        # Move it aside first: if it was released and taken again since we read it, the new
        # holder's file is the one moved, and it goes straight back.
        aside = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if read_stripped(aside) == holder:
                _log.warning("lock %s broken: %s", self.path, reason)
                return
            try:
                os.link(aside, self.path)
            except FileExistsError:
                _log.error("lock %s: a live holder's lock was moved aside and retaken", self.path)
        finally:
            aside.unlink(missing_ok=True)

    def _release(self, mine: str) -> None:
        if read_stripped(self.path) == mine:
            self.path.unlink()
        else:
            _log.error("the lock %s was broken while held", self.path)


class SignalSafeJournalLock(JournalFileOpenLock):
    """Optuna's ``O_EXCL`` journal lock, with SIGTERM and Ctrl-C held back while it is held.

    Raised between creating the lock file and Optuna's ``try``, they would leave the lock for
    every worker to wait out (its 30 s grace period).
    """

    def __init__(self, filepath: str) -> None:
        super().__init__(filepath)
        self._deferral: ExitStack | None = None

    def acquire(self) -> bool:
        deferral = ExitStack()
        deferral.enter_context(signals_deferred())
        try:
            acquired = super().acquire()
        except BaseException:
            deferral.close()
            raise
        self._deferral = deferral
        return acquired

    def release(self) -> None:
        deferral, self._deferral = self._deferral, None
        try:
            super().release()
        finally:
            if deferral is not None:
                deferral.close()  # delivers what arrived while held
