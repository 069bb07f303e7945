"""Trial heartbeats: files in ``<sweep_dir>/heartbeats`` that a running trial's worker
touches from a daemon thread, judged by the shared filesystem's clock.

Optuna's journal storage has no heartbeat of its own; these let a worker tell a trial whose
worker died (on any host) from one that is still running.
"""

from __future__ import annotations

from pathlib import Path

from medflow.layout import Layout


def heartbeat_interval(grace_s: float) -> float:
    """Seconds between touches: ten per grace period, within [0.2 s, 10 s]."""
    return max(0.2, min(10.0, grace_s / 10))


def fs_now(sweep_dir: Path) -> float:
    """The shared filesystem's clock, which stamped the heartbeats (hosts' clocks may differ)."""
    clock = Layout.heartbeat_clock_file(sweep_dir)
    clock.parent.mkdir(parents=True, exist_ok=True)
    clock.touch()
    return clock.stat().st_mtime


def heartbeat_age(sweep_dir: Path, number: int, now: float) -> float | None:
    """Seconds since trial ``number``'s last heartbeat (``now`` from :func:`fs_now`), or None
    if it has none."""
    try:
        return now - Layout.heartbeat_file(sweep_dir, number).stat().st_mtime
    except FileNotFoundError:
        return None
