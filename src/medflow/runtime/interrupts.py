"""Keep SIGTERM and Ctrl-C out of code that must not stop halfway.

A Python signal handler that raises (``Terminated``, ``KeyboardInterrupt``) does so between any
two bytecodes: inside a library's database transaction or between creating a lock file and
recording that it is held. Such code runs in :func:`signals_deferred`, and the signal takes
effect right after it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["DeferredSignals", "handler_installed", "signals_deferred"]

_DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DeferredSignals:
    """Signal handler that only records; remembers the handlers it replaced."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    @property
    def interrupting(self) -> bool:
        """A signal arrived that will do something when delivered (not ignored)."""
        return any(self.previous.get(s) is not signal.SIG_IGN for s in self.pending)


@contextmanager
def handler_installed(
    handler: Callable[[int, FrameType | None], Any], signals: Sequence[int]
) -> Iterator[dict[int, Any] | None]:
    """``handler`` for ``signals`` inside the block, the previous handlers restored after.

    Yields the handlers it replaced, or None off the main thread: only the main thread may set
    handlers, and Python runs them there only, so nothing raises in another thread anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield previous
    finally:
        for sig, replaced in previous.items():
            signal.signal(sig, replaced if replaced is not None else signal.SIG_DFL)


@contextmanager
def signals_deferred() -> Iterator[DeferredSignals]:
    """SIGTERM and SIGINT received inside the block are delivered when it ends."""
    deferred = DeferredSignals()
    try:
        with handler_installed(deferred, _DEFERRED_SIGNALS) as previous:
            deferred.previous = previous or {}
            yield deferred
    finally:
        for sig in dict.fromkeys(deferred.pending):
            signal.raise_signal(sig)
