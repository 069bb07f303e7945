"""Ending MLflow runs that a dead worker left RUNNING after its trial was over (told by it,
or failed by another worker that took it for dead): FINISHED or KILLED by the trial's state."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from medflow.hpo.heartbeats import fs_now, heartbeat_age
from medflow.hpo.study import FINISHED
from medflow.runtime.liveness import ProcessIdentity, gone_pid
from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs

_log = logging.getLogger(__name__)


def _worker_still_ending(
    trial: FrozenTrial, sweep_dir: Path, grace_s: float, me: ProcessIdentity, now: float
) -> bool:
    """Whether the worker of a finished trial may still be ending its run: it told the study
    and removes the heartbeat only after ending the run, so a fresh heartbeat of a live
    worker means "not orphaned yet"."""
    if gone_pid(trial.user_attrs, me) is not None:
        return False
    age = heartbeat_age(sweep_dir, trial.number, now)
    return age is not None and age <= grace_s


def end_orphaned_runs(
    study: optuna.Study,
    tracker: Tracker,
    experiment: str,
    parent_run_id: str,
    sweep_dir: Path,
    grace_s: float,
    me: ProcessIdentity,
) -> None:
    """End RUNNING child runs whose trial is over and whose worker died before ending them."""
    runs = find_runs(
        tracker,
        experiment,
        f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    if not runs:
        return
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    now = fs_now(sweep_dir)
    for run in runs:
        trial = trials.get(int(run.data.tags.get("trial_number", -1)))
        if trial is None or not trial.state.is_finished():
            continue
        if _worker_still_ending(trial, sweep_dir, grace_s, me, now):
            continue
        status = "FINISHED" if trial.state in FINISHED else "KILLED"
        _log.warning("ending orphaned MLflow run %s of trial %d", run.info.run_id, trial.number)
        tracker.set_tags(run.info.run_id, {"optuna_state": trial.state.name})
        tracker.end_run(run.info.run_id, status)
