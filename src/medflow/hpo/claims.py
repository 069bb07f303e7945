"""Claiming trials under the sweep's lock: dead trials failed and requeued, then a new
trial started only while the budget allows, so the study ends with exactly ``n_trials``.

The claim lock is a :class:`medflow.runtime.lockfile.HolderLock` (``link(2)``, atomic on
NFSv3+, Lustre and GPFS, unlike ``flock``/``fcntl`` on some cluster filesystems). It names its
holder: it is broken at once when the holder ran on the waiter's host and is gone, else after
a grace period without the refresh a live holder does from a thread.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from medflow.hpo.heartbeats import fs_now, heartbeat_age
from medflow.hpo.space import SweepConfig
from medflow.hpo.study import FINISHED, claim_sampler, get_trial
from medflow.layout import Layout
from medflow.runtime.liveness import ProcessIdentity, gone_pid
from medflow.runtime.lockfile import HolderLock

_log = logging.getLogger(__name__)

# A claim takes milliseconds; a dead holder's lock file is broken after this long. It exceeds
# NFS's attribute cache (acregmax, 60 s by default) so a refreshed lock never looks stale.
_CLAIM_LOCK_GRACE_S = 90


def sweep_lock(sweep_dir: Path) -> AbstractContextManager[None]:
    """Exclusive across processes and hosts sharing ``sweep_dir``."""
    return HolderLock(Layout.claim_lock_file(sweep_dir), _CLAIM_LOCK_GRACE_S).held()


def stale_reason(
    trial: FrozenTrial, sweep_dir: Path, grace_s: float, me: ProcessIdentity, now: float
) -> str | None:
    """Why a RUNNING trial is dead, or None if it may still be alive."""
    pid = gone_pid(trial.user_attrs, me)
    if pid is not None:
        return f"worker {me.host}:{pid} is gone"
    age = heartbeat_age(sweep_dir, trial.number, now)
    if age is None:
        # Killed before its first heartbeat: fall back on its start time (worker's clock).
        if trial.datetime_start is None:
            return None
        age = time.time() - trial.datetime_start.timestamp()
    if age > grace_s:
        return f"no heartbeat for {age:.0f}s"
    return None


def fail_and_requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> None:
    """Tell FAIL and enqueue a copy of its params (at most ``max_retry`` retries per original
    trial, like Optuna's RetryFailedTrialCallback); call under the sweep lock."""
    study.tell(trial.number, state=TrialState.FAIL)
    history = [*trial.user_attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        _log.warning("trial %d failed; not retried (max_retry=%d)", trial.number, max_retry)
        return
    # fixed_params holds what a retry had not suggested yet when it failed.
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    study.enqueue_trial(params, user_attrs={"retry_of": history[0], "retry_history": history})


def fail_if_running(study: optuna.Study, sweep_dir: Path, number: int, max_retry: int) -> bool:
    """Fail our own trial unless someone already finished it (e.g. took it for dead)."""
    with sweep_lock(sweep_dir):
        trial = get_trial(study, number)
        if trial.state != TrialState.RUNNING:
            return False
        fail_and_requeue(study, trial, max_retry)
        return True


@dataclass(frozen=True)
class Claim:
    trial: optuna.Trial | None  # None: the budget is spent
    recovered: tuple[int, ...]  # trials failed as dead during this claim


def _fail_dead_trials(
    study: optuna.Study, cfg: SweepConfig, sweep_dir: Path, me: ProcessIdentity
) -> tuple[int, ...]:
    now = fs_now(sweep_dir)
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial, sweep_dir, cfg.heartbeat_grace_s, me, now)
        if reason is not None:
            _log.warning("trial %d taken as dead (%s): marked FAIL", trial.number, reason)
            fail_and_requeue(study, trial, cfg.max_retry)
            recovered.append(trial.number)
    return tuple(recovered)


def claim(
    study: optuna.Study, cfg: SweepConfig, sweep_dir: Path, me: ProcessIdentity, worker: str
) -> Claim:
    """Fail dead trials, then start a trial if the budget allows; atomic across workers.

    Every claim reseeds the TPE sampler from ``(seed, number of trials so far)``.
    """
    with sweep_lock(sweep_dir):
        recovered = _fail_dead_trials(study, cfg, sweep_dir, me)
        trials = study.get_trials(deepcopy=False)
        counted = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
        if counted >= cfg.n_trials:
            return Claim(None, recovered)
        study.sampler = claim_sampler(cfg.seed, len(trials))
        trial = study.ask()  # pops an enqueued retry first
        # Recorded before the lock is released, so others can always judge this trial.
        Layout.heartbeat_file(sweep_dir, trial.number).touch()
        for key, value in {**me.attrs(), "worker": worker}.items():
            trial.set_user_attr(key, value)
        return Claim(trial, recovered)
