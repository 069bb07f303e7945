"""Tracked runs: a run that always ends FINISHED, FAILED or KILLED, also on SIGTERM and Ctrl-C.

SIGTERM (Snakemake cancelling a job, a cluster's time limit) is turned into ``Terminated`` in
the main thread so that the run is closed as KILLED instead of being left RUNNING.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from medflow.runtime.interrupts import handler_installed
from medflow.tracking.params import one_line

if TYPE_CHECKING:
    from medflow.tracking.client import Tracker

FAILURE_REASON_TAG = "failure_reason"

_log = logging.getLogger(__name__)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM inside ``tracked_run``.

    A BaseException so that ``except Exception`` in training code cannot swallow it. An entry
    point may exit with ``exc.exit_code`` (143) to report the signal the conventional way.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


class _SigtermGuard:
    """SIGTERM handler: raise ``Terminated`` once while armed, afterwards only remember it."""

    def __init__(self) -> None:
        self.armed = True
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        self.received = True
        if self.armed:
            self.armed = False
            raise Terminated(signum)


@contextmanager
def _sigterm_guard() -> Iterator[_SigtermGuard]:
    guard = _SigtermGuard()
    with handler_installed(guard, (signal.SIGTERM,)) as previous:
        guard.armed = previous is not None  # off the main thread it never runs
        yield guard


def _failure_reason(exc: BaseException) -> str:
    message = one_line(str(exc))
    return one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


@contextmanager
def tracked_run(
    tracker: Tracker,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Run id of a new run that ends FINISHED, FAILED (exception) or KILLED (Ctrl-C/SIGTERM).

    A run already ended inside the block (e.g. ``mark_run_failed`` for divergence) keeps its
    status on normal exit.
    """
    with _sigterm_guard() as guard:
        run_id = tracker.start_run(experiment, run_name, tags, parent_run_id)
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except BaseException as exc:
            guard.armed = False
            status = _status_for(exc)
            if status != "FINISHED":
                _record_failure(tracker, run_id, exc)
            raise
        finally:
            # A SIGTERM now would abort the cleanup and leave the run RUNNING: defer it.
            guard.armed = False
            _close_run(tracker, run_id, status)
        if guard.received:
            # The work finished but we were asked to stop: still exit non-zero.
            raise Terminated()


def _status_for(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | Terminated):
        return "KILLED"
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return "FINISHED"
    return "FAILED"


def _record_failure(tracker: Tracker, run_id: str, exc: BaseException) -> None:
    try:
        tracker.set_tags(run_id, {FAILURE_REASON_TAG: _failure_reason(exc)})
    except Exception:
        # The original exception matters more than the tag; the run still ends FAILED.
        _log.exception("could not record failure reason for run %s", run_id)


def _close_run(tracker: Tracker, run_id: str, status: str) -> None:
    if status == "FINISHED":
        try:
            tracker.flush(run_id)
            already_ended = tracker.get_run(run_id).info.status != "RUNNING"
        except Exception:
            # Results that cannot be saved make the run incomplete; never leave it RUNNING.
            tracker.end_run(run_id, "FAILED")
            raise
        if already_ended:  # e.g. mark_run_failed() for a diverged run
            return
    tracker.end_run(run_id, status)


def mark_run_failed(tracker: Tracker, run_id: str, reason: str) -> None:
    """End a run FAILED with a ``failure_reason`` tag, for failures without an exception."""
    tracker.set_tags(run_id, {FAILURE_REASON_TAG: one_line(reason)})
    tracker.end_run(run_id, "FAILED")
