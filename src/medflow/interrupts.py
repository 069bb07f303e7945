"""Keep SIGTERM and Ctrl-C out of code that must not stop halfway.

A Python signal handler that raises (``Terminated``, ``KeyboardInterrupt``) does so between any
two bytecodes: inside a library's database transaction or between creating a lock file and
recording that it is held. Such code runs in :func:`signals_deferred`, and the signal takes
effect right after it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["DeferredSignals", "signals_deferred"]

_DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DeferredSignals:
    """Signal handler that only records; remembers the handlers it replaced."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    @property
    def interrupting(self) -> bool:
        """A signal arrived that will do something when delivered (not ignored)."""
        return any(self.previous.get(s) is not signal.SIG_IGN for s in self.pending)


@contextmanager
def signals_deferred() -> Iterator[DeferredSignals]:
    """SIGTERM and SIGINT received inside the block are delivered when it ends."""
    deferred = DeferredSignals()
    # Handlers can only be set from the main thread; elsewhere the block runs unprotected.
    if threading.current_thread() is not threading.main_thread():
        yield deferred
        return
    for sig in _DEFERRED_SIGNALS:
        deferred.previous[sig] = signal.signal(sig, deferred)
    try:
        yield deferred
    finally:
        for sig, handler in deferred.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(deferred.pending):
            signal.raise_signal(sig)
