"""The sweep's two processes: ``init_sweep`` (the study and its MLflow parent run, once) and
``run_worker`` (claim a trial, run the objective in a nested MLflow run, tell the study, until
the budget is spent). Any number of workers on any number of hosts may share ``sweep_dir``.

A failed or interrupted trial is failed and requeued with the same parameters; a worker that
starts after a crash fails the dead trials first (medflow.hpo.claims) and ends their runs
(medflow.hpo.recovery).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from medflow.errors import MedflowError
from medflow.hpo.claims import claim, fail_if_running, sweep_lock
from medflow.hpo.design import SweepPlan
from medflow.hpo.heartbeats import heartbeat_interval
from medflow.hpo.recovery import end_orphaned_runs
from medflow.hpo.space import SearchSpace, SweepConfig
from medflow.hpo.study import FINISHED, PARENT_RUN_ATTR, get_trial, open_study, parent_run_id
from medflow.hpo.trials import duration_s
from medflow.layout import Layout
from medflow.runtime.io import atomic_write_bytes
from medflow.runtime.liveness import ProcessIdentity, refreshed
from medflow.runtime.progress import TrialProgress
from medflow.tracking.client import Tracker
from medflow.tracking.runs import tracked_run

__all__ = ["Objective", "init_sweep", "run_worker"]

_log = logging.getLogger(__name__)

# How often a worker waiting for a generation to finish looks again (a claim is milliseconds).
_GENERATION_POLL_S = 0.25

# What a worker runs per trial: ``objective(trial, run_id) -> value``. It samples with
# medflow.hpo.space.suggest, reports ``trial.report(value, step=epoch)`` (epochs counted from
# 1, Hyperband's resource) and raises ``optuna.TrialPruned`` to stop early.
Objective = Callable[[optuna.Trial, str], float]


def init_sweep(
    cfg: SweepConfig,
    sweep_dir: Path,
    study_name: str,
    tracker: Tracker,
    experiment: str,
    tags: Mapping[str, str],
) -> str:
    """Create the study and its MLflow parent run once; return the parent run id."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(sweep_dir):
        study = open_study(cfg, sweep_dir, study_name, create=True)
        parent = study.user_attrs.get(PARENT_RUN_ATTR)
        if not parent:
            parent = tracker.start_run(
                experiment,
                f"sweep {tags.get('study', study_name)}",  # the medflow study, not the digest
                {**tags, "optuna_study": study_name},
            )
            status = "FAILED"
            try:
                tracker.log_params(parent, dataclasses.asdict(cfg))
                study.set_user_attr(PARENT_RUN_ATTR, parent)
                status = "FINISHED"
            finally:
                # Ended at once so that a killed sweep never leaves it RUNNING; children still
                # nest under it through their mlflow.parentRunId tag.
                tracker.end_run(parent, status)
        atomic_write_bytes(Layout.parent_run_id_file(sweep_dir), f"{parent}\n".encode())
    return str(parent)


@dataclass(frozen=True)
class _Worker:
    """What one worker process holds while it claims and runs trials."""

    cfg: SweepConfig
    sweep_dir: Path
    study: optuna.Study
    tracker: Tracker
    experiment: str
    tags: Mapping[str, str]
    name: str
    parent: str
    me: ProcessIdentity
    plan: SweepPlan

    def end_orphaned_runs(self) -> None:
        end_orphaned_runs(
            self.study,
            self.tracker,
            self.experiment,
            self.parent,
            self.sweep_dir,
            self.cfg.heartbeat_grace_s,
            self.me,
        )

    def next_trial(self) -> optuna.Trial | None:
        """A claimed trial, or None when the budget is spent. In a reproducible sweep it
        waits while the next slot's generation waits for earlier ones (taking over their
        trials if their workers die meanwhile)."""
        while True:
            claimed = claim(self.study, self.plan, self.sweep_dir, self.me, self.name)
            if claimed.recovered:
                self.end_orphaned_runs()
            if not claimed.wait:
                return claimed.trial
            time.sleep(_GENERATION_POLL_S)

    def run_tags(self, trial: optuna.Trial) -> dict[str, str]:
        tags = {
            **self.tags,
            "trial_number": str(trial.number),
            "optuna_study": self.study.study_name,
            "worker": self.name,
        }
        if "retry_of" in trial.user_attrs:
            tags["retry_of"] = str(trial.user_attrs["retry_of"])
        return tags


@dataclass(frozen=True)
class _Outcome:
    state: TrialState  # as the study has it now; FAIL also when someone else failed it
    value: float | None
    error: Exception | None = None


class _LostTrial(Exception):
    """Our trial was finished by another worker that took it for dead."""


def _run_trial(w: _Worker, trial: optuna.Trial, objective: Objective) -> _Outcome:
    """Run the objective in a child run and tell the study; exceptions propagate."""
    with tracked_run(
        w.tracker, w.experiment, f"trial {trial.number}", w.run_tags(trial), w.parent
    ) as run_id:
        trial.set_user_attr("mlflow_run_id", run_id)
        try:
            value: float | None = objective(trial, run_id)
            state = TrialState.COMPLETE
        except optuna.TrialPruned:
            value, state = None, TrialState.PRUNED
        finally:
            _log_trial_params(w.tracker, run_id, trial)
        told = w.study.tell(
            trial, value if state == TrialState.COMPLETE else None, state, skip_if_finished=True
        )
        if told.state != state:
            raise _LostTrial(f"trial {trial.number} was set {told.state.name} by another worker")
        w.tracker.set_tags(run_id, {"optuna_state": state.name})
    return _Outcome(told.state, told.value)


def _log_trial_params(tracker: Tracker, run_id: str, trial: optuna.Trial) -> None:
    try:
        tracker.log_params(run_id, {"optuna": trial.params})
    except Exception:
        # The trial keeps its params in the study; losing the copy in MLflow is not fatal.
        _log.exception("could not log the params of trial %d", trial.number)


def _attempt(w: _Worker, trial: optuna.Trial, objective: Objective) -> _Outcome:
    """Run a claimed trial with its heartbeat; a failure fails (and requeues) it.

    KeyboardInterrupt and ``Terminated`` (SIGTERM) fail the trial too, and propagate.
    """
    heartbeat = Layout.heartbeat_file(w.sweep_dir, trial.number)
    try:
        with refreshed(heartbeat, heartbeat_interval(w.cfg.heartbeat_grace_s)):
            return _run_trial(w, trial, objective)
    except _LostTrial as exc:
        _log.warning("%s; its result is discarded", exc)
        return _Outcome(TrialState.FAIL, None)
    except Exception as exc:
        failed = fail_if_running(w.study, w.sweep_dir, trial.number, w.cfg.max_retry)
        if not failed:
            return _Outcome(get_trial(w.study, trial.number).state, None)
        _log.error("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
        return _Outcome(TrialState.FAIL, None, exc)
    except BaseException:
        fail_if_running(w.study, w.sweep_dir, trial.number, w.cfg.max_retry)
        raise
    finally:
        heartbeat.unlink(missing_ok=True)


def run_worker(
    cfg: SweepConfig,
    sweep_dir: Path,
    study_name: str,
    objective: Objective,
    tracker: Tracker,
    experiment: str,
    tags: Mapping[str, str],
    worker: str,
    *,
    space: SearchSpace | None = None,
    max_consecutive_failures: int = 3,
) -> int:
    """Claim and run trials until the budget is spent; return how many this worker finished.

    A failing objective fails its trial (retried later) and the worker goes on, unless
    ``max_consecutive_failures`` trials in a row fail: then MedflowError. KeyboardInterrupt and
    ``Terminated`` (SIGTERM) fail the trial, end its run KILLED and propagate. ``space`` is
    what the trials search: a factorial or reproducible sweep plans its slots from it.
    """
    sweep_dir = Path(sweep_dir)
    study = open_study(cfg, sweep_dir, study_name, create=False)
    me = ProcessIdentity.current()
    plan = SweepPlan(cfg, space)
    if plan.planned and space is None:
        raise MedflowError(
            f"sweep {study_name}: a {cfg.design} or reproducible sweep needs its space"
        )
    if cfg.reproducible and cfg.workers > cfg.generation_size:
        _log.warning(
            "sweep %s: %d workers but generations of %d trials: some will idle "
            "(raise sweep.generation_size)",
            study_name,
            cfg.workers,
            cfg.generation_size,
        )
    parent = parent_run_id(study)
    w = _Worker(cfg, sweep_dir, study, tracker, experiment, tags, worker, parent, me, plan)
    w.end_orphaned_runs()
    finished = consecutive_failures = 0
    progress = TrialProgress(f"sweep {study_name}", plan.n_trials, cfg.workers)
    while (trial := w.next_trial()) is not None:
        started = time.monotonic()
        outcome = _attempt(w, trial, objective)
        _log_line(trial, outcome, time.monotonic() - started, worker)
        _report_progress(study, progress)
        if outcome.state in FINISHED:
            finished += 1
            consecutive_failures = 0
        elif outcome.error is not None:
            consecutive_failures += 1
            if consecutive_failures >= max_consecutive_failures:
                raise MedflowError(
                    f"sweep {study_name}: {consecutive_failures} trials in a row failed, "
                    f"last: {type(outcome.error).__name__}: {outcome.error}"
                ) from outcome.error
    _log.info("worker %s: budget of %d trials reached; ran %d", worker, plan.n_trials, finished)
    return finished


def _report_progress(study: optuna.Study, progress: TrialProgress) -> None:
    """The whole study's finished trials, best value and ETA, from any worker."""
    done = study.get_trials(deepcopy=False, states=FINISHED)
    values = [t.value for t in done if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if values:
        best = max(values) if study.direction == StudyDirection.MAXIMIZE else min(values)
    durations = [d for t in done if (d := duration_s(t)) is not None]
    mean_s = sum(durations) / len(durations) if durations else None
    progress.update(len(done), best, mean_s)


def _log_line(trial: optuna.Trial, outcome: _Outcome, seconds: float, worker: str) -> None:
    value = "-" if outcome.value is None else f"{outcome.value:.6g}"
    _log.info(
        "trial %d %s value=%s in %.1fs worker=%s params=%s",
        trial.number,
        outcome.state.name,
        value,
        seconds,
        worker,
        json.dumps(trial.params, sort_keys=True, default=str),
    )
