"""Optuna sweeps run by several worker processes, each trial an MLflow child run.

What is trained is not known here: a worker calls ``objective(trial, run_id) -> float``, which
samples its hyperparameters with :func:`suggest`, reports the per-epoch metric with
``trial.report(value, step=epoch)`` (epochs counted from 1, Hyperband's resource), checks
``trial.should_prune()`` and raises ``optuna.TrialPruned`` to stop early.

Guarantees, with any number of workers on any number of hosts sharing ``sweep_dir``:

* Exact budget: the study ends with exactly ``n_trials`` COMPLETE or PRUNED trials. Counting
  and ``study.ask()`` happen together under an exclusive lock file in ``sweep_dir``, and so do
  failing a trial and enqueueing its retry, so no worker can claim a fresh trial in between.
* Failed and interrupted trials are retried with the same parameters (at most ``max_retry``
  times per original trial), like Optuna's ``RetryFailedTrialCallback``.
* Resume after the whole workflow was killed: Optuna's journal storage has no heartbeat, so
  each running trial touches ``<sweep_dir>/heartbeats/trial_<n>`` from a daemon thread. At
  claim time a RUNNING trial is taken as dead when that file is older than
  ``heartbeat_grace_s``, or at once when its worker ran on this host and is gone. Dead trials
  become FAIL (and are retried); their MLflow runs, if still RUNNING, end KILLED.

The journal's lock file is Optuna's ``JournalFileOpenLock`` (``O_CREAT | O_EXCL``) and the claim
lock a :class:`medflow.runtime.lockfile.HolderLock` (``link(2)``): both atomic on NFSv3+, Lustre and
GPFS, whereas ``flock``/``fcntl`` locks are unsupported or silently node-local on some cluster
filesystems, which would let workers on two nodes claim at once. Unlike kernel locks, such a
file outlives a killed holder. The claim lock names its holder: it is broken at once when the
holder ran on the waiter's host and is gone, else after a grace period without the refresh a
live holder does from a thread; SIGTERM reaches a holder only after it released the lock.
``sweep_dir`` must therefore be shared by all workers, also with an RDB storage.

Every claim reseeds the TPE sampler from ``(seed, number of trials so far)``: a fixed seed in
every worker would give all of them (and every resumed worker) the same random start-up trials.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import TPESampler
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from medflow.config.strict import reject_unknown_keys
from medflow.errors import ConfigError, MedflowError
from medflow.runtime.io import atomic_write_bytes, write_json_atomic
from medflow.runtime.liveness import ProcessIdentity, gone_pid, refreshed
from medflow.runtime.lockfile import HolderLock, SignalSafeJournalLock
from medflow.runtime.progress import TrialProgress
from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs, tracked_run

__all__ = [
    "PARENT_RUN_ATTR",
    "Objective",
    "SearchSpace",
    "SweepConfig",
    "init_sweep",
    "open_study",
    "run_worker",
    "suggest",
    "summarize",
]

_log = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial, str], float]

PARENT_RUN_ATTR = "mlflow_parent_run_id"
PARENT_RUN_FILE = "parent_run_id.txt"
JOURNAL_FILE = "optuna.journal"
HEARTBEAT_DIR = "heartbeats"
CLAIM_LOCK_FILE = "claim.lock"

PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A claim takes milliseconds; a dead holder's lock file is broken after this long. It exceeds
# NFS's attribute cache (acregmax, 60 s by default) so a refreshed lock never looks stale.
_CLAIM_LOCK_GRACE_S = 90
_SQLITE_TIMEOUT_S = 60


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SweepConfig:
    """How a sweep runs (not what it searches: see :class:`SearchSpace`)."""

    n_trials: int
    workers: int = 2
    seed: int = 0
    pruner: str = "median"
    storage: str | None = None
    metric: str = "val_accuracy"
    direction: str = "maximize"
    epochs: int = 10
    heartbeat_grace_s: float = 300.0
    max_retry: int = 2

    def __post_init__(self) -> None:
        if self.n_trials < 1 or self.workers < 1 or self.epochs < 1:
            raise ConfigError("sweep: n_trials, workers and epochs must be >= 1")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"sweep.pruner: {self.pruner!r} is not one of {PRUNERS}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"sweep.direction: {self.direction!r} is not one of {DIRECTIONS}")
        if self.heartbeat_grace_s <= 0 or self.max_retry < 0:
            raise ConfigError("sweep: heartbeat_grace_s must be > 0 and max_retry >= 0")
        if self.storage is not None and "://" not in self.storage:
            raise ConfigError(
                f"sweep.storage: {self.storage!r} is not a database URL; "
                "use null for a journal file in the sweep folder"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepConfig:
        reject_unknown_keys(cls, data, ConfigError)
        return cls(**data)


def _range(name: str, value: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not 0 < low <= high:
        raise ConfigError(f"search space {name}: need 0 < low <= high, got {list(value)}")
    return low, high


def _choices(name: str, value: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(value, str) or not value:
        raise ConfigError(f"search space {name}: need a non-empty list, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class SearchSpace:
    """What a trial samples; ``None`` dimensions are not sampled (the trainer's value stays)."""

    optimizers: tuple[str, ...]
    activations: tuple[str, ...]
    lr: tuple[float, float]
    weight_decay: tuple[float, float] | None = None
    batch_sizes: tuple[int, ...] | None = None
    freeze: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Normalise lists (from YAML/JSON) so the dataclass stays hashable and comparable.
        object.__setattr__(self, "optimizers", _choices("optimizers", self.optimizers))
        object.__setattr__(self, "activations", _choices("activations", self.activations))
        object.__setattr__(self, "lr", _range("lr", self.lr))
        if self.weight_decay is not None:
            object.__setattr__(self, "weight_decay", _range("weight_decay", self.weight_decay))
        if self.batch_sizes is not None:
            sizes = tuple(int(b) for b in _choices("batch_sizes", self.batch_sizes))
            object.__setattr__(self, "batch_sizes", sizes)
        if self.freeze is not None:
            object.__setattr__(self, "freeze", _choices("freeze", self.freeze))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        reject_unknown_keys(cls, data, ConfigError)
        return cls(**data)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample the listed dimensions: optimizer, activation, lr and any optional ones listed."""
    params: dict[str, Any] = {
        "optimizer": trial.suggest_categorical("optimizer", space.optimizers),
        "activation": trial.suggest_categorical("activation", space.activations),
        "lr": trial.suggest_float("lr", *space.lr, log=True),
    }
    if space.weight_decay is not None:
        params["weight_decay"] = trial.suggest_float("weight_decay", *space.weight_decay, log=True)
    if space.batch_sizes is not None:
        params["batch_size"] = trial.suggest_categorical("batch_size", space.batch_sizes)
    if space.freeze is not None:
        params["freeze"] = trial.suggest_categorical("freeze", space.freeze)
    return params


# --------------------------------------------------------------------------- study


def _storage(cfg: SweepConfig, sweep_dir: Path) -> BaseStorage | str:
    if cfg.storage is None:
        path = str((sweep_dir / JOURNAL_FILE).resolve())
        return JournalStorage(JournalFileBackend(path, lock_obj=SignalSafeJournalLock(path)))
    if cfg.storage.startswith("sqlite"):
        # Concurrent workers: wait for SQLite's write lock instead of failing after 5 s.
        return RDBStorage(
            cfg.storage, engine_kwargs={"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
        )
    # A server (PostgreSQL, MySQL) may drop a pooled connection while a long trial trains;
    # test it on checkout rather than failing the trial's tell.
    return RDBStorage(cfg.storage, engine_kwargs={"pool_pre_ping": True})


def _pruner(cfg: SweepConfig) -> BasePruner:
    if cfg.pruner == "median":
        # Judge a trial only after a fifth of its epochs: slow starters (plain SGD, small
        # learning rates) look worst in the first epochs and would be pruned unfairly.
        return MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, cfg.epochs // 5))
    if cfg.pruner == "hyperband":
        return HyperbandPruner(min_resource=1, max_resource=cfg.epochs)
    return NopPruner()


def open_study(cfg: SweepConfig, sweep_dir: Path, study_name: str, create: bool) -> optuna.Study:
    """The study with a seeded TPE sampler and the configured pruner and storage."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "study_name": study_name,
        "storage": _storage(cfg, sweep_dir),
        "sampler": TPESampler(seed=cfg.seed),
        "pruner": _pruner(cfg),
    }
    if create:
        return optuna.create_study(direction=cfg.direction, load_if_exists=True, **kwargs)
    try:
        return optuna.load_study(**kwargs)
    except KeyError as exc:
        raise MedflowError(
            f"no Optuna study {study_name!r} in {cfg.storage or sweep_dir / JOURNAL_FILE}; "
            "initialise the sweep first"
        ) from exc


def _claim_sampler(seed: int, n_existing: int) -> TPESampler:
    """A TPE sampler seeded per claim.

    One sampler seeded with ``cfg.seed`` in every worker would hand all workers (and a resumed
    worker) the same random start-up parameters; keying the seed on the number of trials
    already in the study keeps the sweep reproducible without duplicates.
    """
    digest = hashlib.sha256(f"{seed}:{n_existing}".encode()).digest()
    return TPESampler(seed=int.from_bytes(digest[:4], "little"))


# --------------------------------------------------------------------------- locks and liveness


def _sweep_lock(sweep_dir: Path) -> AbstractContextManager[None]:
    """Exclusive across processes and hosts sharing ``sweep_dir`` (see the module docstring)."""
    return HolderLock(sweep_dir / CLAIM_LOCK_FILE, _CLAIM_LOCK_GRACE_S).held()


def _heartbeat_path(sweep_dir: Path, number: int) -> Path:
    return sweep_dir / HEARTBEAT_DIR / f"trial_{number}"


def _heartbeat_interval(grace_s: float) -> float:
    return max(0.2, min(10.0, grace_s / 10))


def _fs_now(sweep_dir: Path) -> float:
    """The shared filesystem's clock, which stamped the heartbeats (hosts' clocks may differ)."""
    clock = sweep_dir / HEARTBEAT_DIR / ".clock"
    clock.parent.mkdir(parents=True, exist_ok=True)
    clock.touch()
    return clock.stat().st_mtime


def _heartbeat_age(sweep_dir: Path, number: int, fs_now: float) -> float | None:
    """Seconds since the trial's last heartbeat, or None if it has none."""
    try:
        return fs_now - _heartbeat_path(sweep_dir, number).stat().st_mtime
    except FileNotFoundError:
        return None


def _stale_reason(
    trial: FrozenTrial, sweep_dir: Path, grace_s: float, me: ProcessIdentity, fs_now: float
) -> str | None:
    """Why a RUNNING trial is dead, or None if it may still be alive."""
    pid = gone_pid(trial.user_attrs, me)
    if pid is not None:
        return f"worker {me.host}:{pid} is gone"
    age = _heartbeat_age(sweep_dir, trial.number, fs_now)
    if age is None:
        # Killed before its first heartbeat: fall back on its start time (worker's clock).
        if trial.datetime_start is None:
            return None
        age = time.time() - trial.datetime_start.timestamp()
    if age > grace_s:
        return f"no heartbeat for {age:.0f}s"
    return None


# --------------------------------------------------------------------------- failing and retrying


def _get_trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if number < len(trials) and trials[number].number == number:
        return trials[number]
    return next(t for t in trials if t.number == number)


def _fail_and_requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> None:
    """Tell FAIL and enqueue a copy of its params; call under the sweep lock."""
    study.tell(trial.number, state=TrialState.FAIL)
    history = [*trial.user_attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        _log.warning("trial %d failed; not retried (max_retry=%d)", trial.number, max_retry)
        return
    # fixed_params holds what a retry had not suggested yet when it failed.
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    study.enqueue_trial(params, user_attrs={"retry_of": history[0], "retry_history": history})


def _fail_if_running(study: optuna.Study, sweep_dir: Path, number: int, max_retry: int) -> bool:
    """Fail our own trial unless someone already finished it (e.g. took it for dead)."""
    with _sweep_lock(sweep_dir):
        trial = _get_trial(study, number)
        if trial.state != TrialState.RUNNING:
            return False
        _fail_and_requeue(study, trial, max_retry)
        return True


@dataclass(frozen=True)
class _Claim:
    trial: optuna.Trial | None
    recovered: tuple[int, ...]


def _claim(
    study: optuna.Study, cfg: SweepConfig, sweep_dir: Path, me: ProcessIdentity, worker: str
) -> _Claim:
    """Fail dead trials, then start a trial if the budget allows; atomic across workers."""
    with _sweep_lock(sweep_dir):
        fs_now = _fs_now(sweep_dir)
        recovered = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            reason = _stale_reason(trial, sweep_dir, cfg.heartbeat_grace_s, me, fs_now)
            if reason is not None:
                _log.warning("trial %d taken as dead (%s): marked FAIL", trial.number, reason)
                _fail_and_requeue(study, trial, cfg.max_retry)
                recovered.append(trial.number)
        trials = study.get_trials(deepcopy=False)
        counted = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
        if counted >= cfg.n_trials:
            return _Claim(None, tuple(recovered))
        study.sampler = _claim_sampler(cfg.seed, len(trials))
        trial = study.ask()  # pops an enqueued retry first
        # Recorded before the lock is released, so others can always judge this trial.
        _heartbeat_path(sweep_dir, trial.number).touch()
        for key, value in {**me.attrs(), "worker": worker}.items():
            trial.set_user_attr(key, value)
        return _Claim(trial, tuple(recovered))


def _worker_still_ending(
    trial: FrozenTrial, sweep_dir: Path, grace_s: float, me: ProcessIdentity, fs_now: float
) -> bool:
    """Whether the worker of a finished trial may still be ending its run: it told the study
    and removes the heartbeat only after ending the run, so a fresh heartbeat of a live
    worker means "not orphaned yet"."""
    if gone_pid(trial.user_attrs, me) is not None:
        return False
    age = _heartbeat_age(sweep_dir, trial.number, fs_now)
    return age is not None and age <= grace_s


def _end_orphaned_runs(
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
    fs_now = _fs_now(sweep_dir)
    for run in runs:
        trial = trials.get(int(run.data.tags.get("trial_number", -1)))
        if trial is None or not trial.state.is_finished():
            continue
        if _worker_still_ending(trial, sweep_dir, grace_s, me, fs_now):
            continue
        status = "FINISHED" if trial.state in FINISHED else "KILLED"
        _log.warning("ending orphaned MLflow run %s of trial %d", run.info.run_id, trial.number)
        tracker.set_tags(run.info.run_id, {"optuna_state": trial.state.name})
        tracker.end_run(run.info.run_id, status)


# --------------------------------------------------------------------------- sweep lifecycle


def _parent_run_id(study: optuna.Study) -> str:
    parent = study.user_attrs.get(PARENT_RUN_ATTR)
    if not parent:
        raise MedflowError(f"study {study.study_name!r} has no MLflow parent run; run init first")
    return str(parent)


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
    with _sweep_lock(sweep_dir):
        study = open_study(cfg, sweep_dir, study_name, create=True)
        parent = study.user_attrs.get(PARENT_RUN_ATTR)
        if not parent:
            parent = tracker.start_run(
                experiment, f"sweep {study_name}", {**tags, "optuna_study": study_name}
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
        atomic_write_bytes(sweep_dir / PARENT_RUN_FILE, f"{parent}\n".encode())
    return str(parent)


@dataclass(frozen=True)
class _Outcome:
    state: TrialState  # as the study has it now; FAIL also when someone else failed it
    value: float | None
    error: Exception | None = None


class _LostTrial(Exception):
    """Our trial was finished by another worker that took it for dead."""


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    objective: Objective,
    tracker: Tracker,
    experiment: str,
    run_tags: Mapping[str, str],
    parent_run_id: str,
) -> _Outcome:
    """Run the objective in a child run and tell the study; exceptions propagate."""
    with tracked_run(
        tracker, experiment, f"trial {trial.number}", run_tags, parent_run_id
    ) as run_id:
        trial.set_user_attr("mlflow_run_id", run_id)
        try:
            value: float | None = objective(trial, run_id)
            state = TrialState.COMPLETE
        except optuna.TrialPruned:
            value, state = None, TrialState.PRUNED
        finally:
            _log_trial_params(tracker, run_id, trial)
        told = study.tell(
            trial, value if state == TrialState.COMPLETE else None, state, skip_if_finished=True
        )
        if told.state != state:
            raise _LostTrial(f"trial {trial.number} was set {told.state.name} by another worker")
        tracker.set_tags(run_id, {"optuna_state": state.name})
    return _Outcome(told.state, told.value)


def _log_trial_params(tracker: Tracker, run_id: str, trial: optuna.Trial) -> None:
    try:
        tracker.log_params(run_id, {"optuna": trial.params})
    except Exception:
        # The trial keeps its params in the study; losing the copy in MLflow is not fatal.
        _log.exception("could not log the params of trial %d", trial.number)


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
    max_consecutive_failures: int = 3,
) -> int:
    """Claim and run trials until the budget is spent; return how many this worker finished.

    A failing objective fails its trial (retried later) and the worker goes on, unless
    ``max_consecutive_failures`` trials in a row fail: then MedflowError. KeyboardInterrupt and
    ``Terminated`` (SIGTERM) fail the trial, end its run KILLED and propagate.
    """
    sweep_dir = Path(sweep_dir)
    study = open_study(cfg, sweep_dir, study_name, create=False)
    parent = _parent_run_id(study)
    me = ProcessIdentity.current()
    end_orphaned_runs = functools.partial(
        _end_orphaned_runs, study, tracker, experiment, parent, sweep_dir, cfg.heartbeat_grace_s, me
    )
    end_orphaned_runs()
    finished = consecutive_failures = 0
    progress = TrialProgress(f"sweep {study_name}", cfg.n_trials, cfg.workers)
    while True:
        claim = _claim(study, cfg, sweep_dir, me, worker)
        if claim.recovered:
            end_orphaned_runs()
        if claim.trial is None:
            break
        trial = claim.trial
        run_tags = {
            **tags,
            "trial_number": str(trial.number),
            "optuna_study": study_name,
            "worker": worker,
        }
        if "retry_of" in trial.user_attrs:
            run_tags["retry_of"] = str(trial.user_attrs["retry_of"])
        started = time.monotonic()
        heartbeat = _heartbeat_path(sweep_dir, trial.number)
        try:
            with refreshed(heartbeat, _heartbeat_interval(cfg.heartbeat_grace_s)):
                outcome = _run_trial(study, trial, objective, tracker, experiment, run_tags, parent)
        except _LostTrial as exc:
            _log.warning("%s; its result is discarded", exc)
            outcome = _Outcome(TrialState.FAIL, None)
        except Exception as exc:
            failed = _fail_if_running(study, sweep_dir, trial.number, cfg.max_retry)
            state = TrialState.FAIL if failed else _get_trial(study, trial.number).state
            outcome = _Outcome(state, None, exc if failed else None)
            if failed:
                _log.error("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
        except BaseException:
            _fail_if_running(study, sweep_dir, trial.number, cfg.max_retry)
            raise
        finally:
            heartbeat.unlink(missing_ok=True)
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
    _log.info("worker %s: budget of %d trials reached; ran %d", worker, cfg.n_trials, finished)
    return finished


def _report_progress(study: optuna.Study, progress: TrialProgress) -> None:
    """The whole study's finished trials, best value and ETA, from any worker."""
    done = study.get_trials(deepcopy=False, states=FINISHED)
    values = [t.value for t in done if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if values:
        best = max(values) if study.direction == StudyDirection.MAXIMIZE else min(values)
    durations = [d for t in done if (d := _duration_s(t)) is not None]
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


# --------------------------------------------------------------------------- results


def _duration_s(trial: FrozenTrial) -> float | None:
    return None if trial.duration is None else round(trial.duration.total_seconds(), 3)


def _trials_csv(trials: Sequence[FrozenTrial]) -> bytes:
    names = sorted({name for t in trials for name in t.params})
    columns = [
        "number",
        "state",
        "value",
        *(f"param_{n}" for n in names),
        "epochs_run",
        "duration_s",
        "mlflow_run_id",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for t in trials:
        writer.writerow(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **{f"param_{n}": t.params.get(n) for n in names},
                # Steps are epochs counted from 1, so the last step is the epochs run.
                "epochs_run": t.last_step,
                "duration_s": _duration_s(t),
                "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            }
        )
    return buffer.getvalue().encode("utf-8")


def summarize(cfg: SweepConfig, sweep_dir: Path, study_name: str, out_dir: Path) -> dict[str, Any]:
    """Write best_params.json and trials.csv to ``out_dir``; return the best_params payload."""
    study = open_study(cfg, Path(sweep_dir), study_name, create=False)
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    if not counts[TrialState.COMPLETE]:
        raise MedflowError(
            f"sweep {study_name}: no trial completed ({counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.FAIL]} failed); nothing to select"
        )
    best = study.best_trial
    summary = {
        "metric": cfg.metric,
        "direction": cfg.direction,
        "value": best.value,
        "number": best.number,
        "params": best.params,
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "n_complete": counts[TrialState.COMPLETE],
        "n_pruned": counts[TrialState.PRUNED],
        "n_failed": counts[TrialState.FAIL],
    }
    out_dir = Path(out_dir)
    write_json_atomic(summary, out_dir / "best_params.json")
    atomic_write_bytes(out_dir / "trials.csv", _trials_csv(trials))
    return summary
