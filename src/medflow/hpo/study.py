"""The Optuna study: its storage (a journal file in the sweep folder, or an RDB), pruner and
samplers, and the few lookups every sweep process makes on it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import TPESampler
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from medflow.errors import ConfigError, MedflowError
from medflow.hpo.journal import TornTailSafeJournal
from medflow.hpo.pruning import GenerationMedianPruner
from medflow.hpo.space import SweepConfig
from medflow.layout import Layout

# The study's user attribute naming its MLflow parent run.
PARENT_RUN_ATTR = "mlflow_parent_run_id"
# What counts against the budget once over.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_SQLITE_TIMEOUT_S = 60


def _storage(cfg: SweepConfig, sweep_dir: Path) -> BaseStorage | str:
    if cfg.storage is None:
        # The journal's lock holds SIGTERM/Ctrl-C back while held (see SignalSafeJournalLock);
        # a torn last record is cut before the next append (see medflow.hpo.journal).
        return JournalStorage(TornTailSafeJournal(str(Layout.journal_file(sweep_dir).resolve())))
    if cfg.storage.startswith("sqlite"):
        # Concurrent workers: wait for SQLite's write lock instead of failing after 5 s.
        return RDBStorage(
            cfg.storage, engine_kwargs={"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
        )
    # A server (PostgreSQL, MySQL) may drop a pooled connection while a long trial trains;
    # test it on checkout rather than failing the trial's tell.
    return RDBStorage(cfg.storage, engine_kwargs={"pool_pre_ping": True})


def pruner(cfg: SweepConfig) -> BasePruner:
    """The configured pruner; Hyperband's resource is the epoch (steps counted from 1).
    A reproducible sweep's median rule looks at earlier generations only."""
    if cfg.pruner == "median":
        # Judge a trial only after a fifth of its epochs: slow starters (plain SGD, small
        # learning rates) look worst in the first epochs and would be pruned unfairly.
        warmup = max(1, cfg.epochs // 5)
        if cfg.reproducible:
            return GenerationMedianPruner(n_startup_trials=3, n_warmup_steps=warmup)
        return MedianPruner(n_startup_trials=3, n_warmup_steps=warmup)
    if cfg.pruner == "hyperband" and cfg.reproducible:
        # Its brackets depend on which trials are running: no rerun would prune alike.
        raise ConfigError(
            "sweep.pruner: hyperband is not reproducible; use median or none, "
            "or set sweep.reproducible: false"
        )
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
        "pruner": pruner(cfg),
    }
    if create:
        return optuna.create_study(direction=cfg.direction, load_if_exists=True, **kwargs)
    try:
        return optuna.load_study(**kwargs)
    except KeyError as exc:
        raise MedflowError(
            f"no Optuna study {study_name!r} in {cfg.storage or Layout.journal_file(sweep_dir)}; "
            "initialise the sweep first"
        ) from exc


def claim_sampler(seed: int, n_existing: int) -> TPESampler:
    """A TPE sampler seeded per claim.

    One sampler seeded with ``cfg.seed`` in every worker would hand all workers (and a resumed
    worker) the same random start-up parameters; keying the seed on the number of trials
    already in the study keeps the sweep reproducible without duplicates.
    """
    digest = hashlib.sha256(f"{seed}:{n_existing}".encode()).digest()
    return TPESampler(seed=int.from_bytes(digest[:4], "little"))


def get_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial ``number`` as the storage has it now."""
    trials = study.get_trials(deepcopy=False)
    if number < len(trials) and trials[number].number == number:
        return trials[number]
    return next(t for t in trials if t.number == number)


def parent_run_id(study: optuna.Study) -> str:
    """The MLflow parent run that init recorded on the study."""
    parent = study.user_attrs.get(PARENT_RUN_ATTR)
    if not parent:
        raise MedflowError(f"study {study.study_name!r} has no MLflow parent run; run init first")
    return str(parent)
