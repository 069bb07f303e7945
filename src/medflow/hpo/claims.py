"""Claiming trials under the sweep's lock: dead trials failed and requeued, then a new
trial started only while the budget allows, so the study ends with exactly the planned
number of finished trials (``n_trials``, or cells x trials_per_cell for a factorial design).

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

from medflow.hpo.design import GENERATION_ATTR, SLOT_ATTR, SweepPlan
from medflow.hpo.generations import generation_ready, next_slot, tpe_params
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
    placed = {k: trial.user_attrs[k] for k in (SLOT_ATTR, GENERATION_ATTR) if k in trial.user_attrs}
    study.enqueue_trial(
        params, user_attrs={"retry_of": history[0], "retry_history": history, **placed}
    )


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
    trial: optuna.Trial | None  # None: the budget is spent, or (wait) not startable yet
    recovered: tuple[int, ...]  # trials failed as dead during this claim
    wait: bool = False  # reproducible: the next slot's generation waits for earlier ones


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


def _ask_free(study: optuna.Study, cfg: SweepConfig, trials: list[FrozenTrial]) -> optuna.Trial:
    """Free-running TPE: the sampler reseeded from ``(seed, number of trials so far)``."""
    study.sampler = claim_sampler(cfg.seed, len(trials))
    return study.ask()  # pops an enqueued retry first


def _ask_planned(
    study: optuna.Study, plan: SweepPlan, trials: list[FrozenTrial]
) -> tuple[optuna.Trial | None, bool]:
    """(trial, wait): a retry, else the lowest free slot if its generation may start (else
    wait), else (None, False): every slot taken. The slot's parameters are enqueued, so the
    objective's suggest gets them."""
    if any(t.state == TrialState.WAITING for t in trials):
        return study.ask(), False  # a retry keeps its slot, generation and parameters
    slot = next_slot(plan, trials)
    if slot is None:
        return None, False
    if plan.cfg.reproducible and not generation_ready(plan, trials, slot):
        return None, True
    params = plan.fixed_params(slot)
    if params is None:
        params = tpe_params(plan, trials, slot, study.direction)
    placed = {SLOT_ATTR: slot, GENERATION_ATTR: plan.generation(slot)}
    study.enqueue_trial(params, user_attrs=placed)
    return study.ask(), False


def claim(
    study: optuna.Study, plan: SweepPlan, sweep_dir: Path, me: ProcessIdentity, worker: str
) -> Claim:
    """Fail dead trials, then start a trial if the budget allows; atomic across workers.

    Free-running TPE reseeds the sampler per claim from ``(seed, number of trials so far)``;
    a planned sweep (factorial or reproducible) takes the lowest free slot
    (medflow.hpo.generations).
    """
    cfg = plan.cfg
    with sweep_lock(sweep_dir):
        recovered = _fail_dead_trials(study, cfg, sweep_dir, me)
        trials = study.get_trials(deepcopy=False)
        if plan.planned:
            asked, wait = _ask_planned(study, plan, trials)
            if asked is None:
                return Claim(None, recovered, wait)
            trial = asked
        else:
            counted = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
            if counted >= cfg.n_trials:
                return Claim(None, recovered)
            trial = _ask_free(study, cfg, trials)
        # Recorded before the lock is released, so others can always judge this trial.
        Layout.heartbeat_file(sweep_dir, trial.number).touch()
        for key, value in {**me.attrs(), "worker": worker}.items():
            trial.set_user_attr(key, value)
        return Claim(trial, recovered)
