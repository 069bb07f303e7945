"""The Optuna journal file, made safe against a torn last record.

A process killed while appending (SIGKILL, out of memory, a full disk) can leave an
incomplete last line. Optuna skips such a line while it is last, but the next append would
glue a new record onto it, and from then on every read fails with a JSONDecodeError. Each
append therefore first cuts an incomplete tail back to the last newline (under the journal
lock, so no live writer is mid-record), with a warning; every complete trial is kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from medflow.runtime.lockfile import SignalSafeJournalLock

log = logging.getLogger(__name__)


def drop_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline; returns the number of bytes dropped.
    The caller holds the journal lock."""
    try:
        with path.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return 0  # the usual case: one seek and one byte
            fh.seek(0)
            keep = fh.read().rfind(b"\n") + 1
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
            return size - keep
    except FileNotFoundError:
        return 0


class TornTailSafeJournal(JournalFileBackend):
    """JournalFileBackend whose appends never build on a torn record."""

    def __init__(self, path: str) -> None:
        self._lock_obj = SignalSafeJournalLock(path)
        super().__init__(path, lock_obj=self._lock_obj)
        self._path = Path(path)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._lock_obj.acquire()
        try:
            dropped = drop_torn_tail(self._path)
        finally:
            self._lock_obj.release()
        if dropped:
            log.warning(
                "%s: dropped an incomplete last record (%d bytes) left by a process that "
                "died while writing; every complete trial is kept",
                self._path,
                dropped,
            )
        super().append_logs(logs)
