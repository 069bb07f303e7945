"""Parallel jobs on one SQLite store: retries while it is locked, one creator of a new store.

Standard library only; ``Tracker`` runs every store call through ``retry_locked``.
"""

from __future__ import annotations

import fcntl
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

LOCK_RETRY_BUDGET_S = 60.0

_log = logging.getLogger(__name__)


def _is_locked_error(exc: BaseException) -> bool:
    """True for SQLite lock contention, however deeply MLflow/SQLAlchemy wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "database is locked" in str(current) or (
            type(current).__name__ == "OperationalError" and "locked" in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_locked(call: Callable[[], T], *, budget_s: float = LOCK_RETRY_BUDGET_S) -> T:
    """Run ``call``; while SQLite says "locked", back off (jittered, exponential) and retry.

    After ``budget_s`` the last error is raised: a write is delayed, never silently dropped.
    Retrying is safe because MLflow rolls back the whole transaction of a failed store call.
    """
    # SystemRandom: never touches (or is reset by) the seeded global RNG used for training.
    jitter = random.SystemRandom()
    deadline = time.monotonic() + budget_s
    delay = 0.05
    while True:
        try:
            return call()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if not _is_locked_error(exc) or remaining <= 0:
                raise
            _log.debug("store locked, retrying in ~%.2fs", delay)
        time.sleep(min(delay * jitter.uniform(0.5, 1.5), remaining))
        delay = min(delay * 2, 2.0)


@contextmanager
def store_init_lock(db_path: Path | None) -> Iterator[None]:
    """Exclusive lock while a store file is created/migrated, shared lock otherwise.

    A client migrates an empty SQLite file when it first opens it, without the file lock that
    MLflow's own server uses for this (``_safe_initialize_tables``), so parallel jobs on a new
    results dir would run the migration concurrently. Openers of an initialised store only take
    the shared lock: they run in parallel but wait for a migration in progress.
    """
    if db_path is None:
        yield
        return
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not db_path.exists() or db_path.stat().st_size == 0
    with open(db_path.with_name(db_path.name + ".init-lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX if fresh else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
