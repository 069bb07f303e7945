"""Tests for medflow.hpo: real Optuna journal, real SQLite MLflow store, real processes."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner
from optuna.trial import TrialState

from medflow.config.schema import properties, search_dimensions
from medflow.data.format import PreparedDataset
from medflow.errors import ConfigError, MedflowError
from medflow.hpo.space import (
    SAMPLERS,
    SearchSpace,
    SweepConfig,
    optuna_study_name,
    run_overrides,
    suggest,
)
from medflow.hpo.study import PARENT_RUN_ATTR, open_study
from medflow.hpo.trials import summarize
from medflow.hpo.worker import init_sweep, run_worker
from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs
from tests.conftest import tiny_mlp_study_config

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 120  # upper bound for any wait on child processes
EXPERIMENT = "medflow/sweep-test"
STUDY = "demo"
TAGS = {"stage": "sweep", "study": STUDY}
SPACE = {"optimizers": ["sgd", "adam"], "activations": ["relu", "tanh"], "lr": [1e-4, 1e-1]}
SPACE_KEYS = ("optimizer", "activation", "lr")


def score(params: dict[str, Any]) -> float:
    """Deterministic stand-in for a validation accuracy: best near lr = 10**-2.5 with adam."""
    bonus = 0.05 if params["optimizer"] == "adam" else 0.0
    return 0.9 - (math.log10(params["lr"]) + 2.5) ** 2 / 10 + bonus


def sweep_cfg(**values: Any) -> SweepConfig:
    """Schema defaults with ``values``; trials judged by val_accuracy, maximised; free-running
    (tests/test_sweep_design.py covers reproducible sweeps)."""
    base = {"metric": "val_accuracy", "direction": "maximize", "reproducible": False}
    return SweepConfig.from_schema(**{**base, **values})


@dataclass(frozen=True)
class Quadratic:
    """A cheap objective reporting ``epochs`` intermediate values (steps counted from 1)."""

    space: dict[str, Any]
    epochs: int = 3
    sleep_s: float = 0.0
    fail_first: tuple[int, ...] = ()  # these trial numbers raise on their first attempt
    always_fail: bool = False
    prune_at: int | None = None  # raise TrialPruned after this many epochs
    jitter_s: float = 0.0  # up to this much more per epoch, at random: irregular timing

    def __call__(self, trial: optuna.Trial, run_id: str) -> float:
        params = suggest(trial, SearchSpace.from_schema(**self.space))
        first_attempt = "retry_of" not in trial.user_attrs
        if self.always_fail or (trial.number in self.fail_first and first_attempt):
            raise RuntimeError(f"injected failure in trial {trial.number}")
        target = score(params)
        for epoch in range(1, self.epochs + 1):
            time.sleep(self.sleep_s + random.uniform(0, self.jitter_s))
            trial.report(target * epoch / self.epochs, epoch)
            if epoch == self.prune_at or trial.should_prune():
                raise optuna.TrialPruned()
        return target


CHILD = """
import json, logging, sys
from pathlib import Path
from medflow.hpo.space import SweepConfig
from medflow.hpo.worker import run_worker
from medflow.tracking.client import Tracker
from medflow.hpo.space import SearchSpace
from tests.test_sweep import EXPERIMENT, STUDY, TAGS, Quadratic

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
a = json.loads(sys.argv[1])
done = run_worker(
    SweepConfig(**a["cfg"]), Path(a["dir"]), STUDY, Quadratic(**a["objective"]),
    Tracker(a["uri"], a["artifacts"]), EXPERIMENT, TAGS, a["worker"],
    space=SearchSpace.from_schema(**a["objective"]["space"]),
)
print(json.dumps({"finished": done}))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    paths = [str(REPO / "src"), str(REPO), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


@pytest.fixture
def spawn(tracker: Tracker, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start worker processes on the test's stores; any still alive at the end are killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(cfg: SweepConfig, objective: Quadratic, worker: str) -> subprocess.Popen[str]:
        args = {
            "cfg": cfg.__dict__,
            "objective": objective.__dict__,
            "dir": str(tmp_path / "sweep"),
            "uri": tracker.tracking_uri,
            "artifacts": tracker.artifact_root,
            "worker": worker,
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path / "sweep"


def init(cfg: SweepConfig, sweep_dir: Path, tracker: Tracker) -> str:
    return init_sweep(cfg, sweep_dir, STUDY, tracker, EXPERIMENT, TAGS)


def work(cfg: SweepConfig, sweep_dir: Path, tracker: Tracker, objective: Quadratic, **kw) -> int:
    space = SearchSpace.from_schema(**objective.space)
    return run_worker(
        cfg, sweep_dir, STUDY, objective, tracker, EXPERIMENT, TAGS, "local", space=space, **kw
    )


def trials_of(cfg: SweepConfig, sweep_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return open_study(cfg, sweep_dir, STUDY, create=False).trials


def n_finished(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def child_runs(tracker: Tracker, parent: str) -> dict[int, Any]:
    runs = find_runs(tracker, EXPERIMENT, f"tags.`{PARENT_RUN_TAG}` = '{parent}'")
    numbers = [int(run.data.tags["trial_number"]) for run in runs]
    assert len(numbers) == len(set(numbers)), "one MLflow run per trial"
    return dict(zip(numbers, runs, strict=True))


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def reported_epoch(cfg: SweepConfig, sweep_dir: Path, number: int) -> bool:
    trials = trials_of(cfg, sweep_dir) if (sweep_dir / "optuna.journal").exists() else []
    return len(trials) > number and bool(trials[number].intermediate_values)


# --------------------------------------------------------------------------- configuration


def test_configs_take_schema_defaults_and_reject_unknown_and_invalid_values() -> None:
    assert sweep_cfg(n_trials=3).pruner == "median"
    with pytest.raises(TypeError, match=r"unknown keys \['trials'\]"):
        sweep_cfg(n_trials=3, trials=4)
    with pytest.raises(ConfigError, match="pruner"):
        sweep_cfg(n_trials=3, pruner="asha")
    space = SearchSpace.from_schema(**{**SPACE, "batch_sizes": [16, 32.0]})
    assert space.optimizers == ("sgd", "adam") and space.batch_sizes == (16, 32)
    assert all(type(size) is int for size in space.batch_sizes)
    assert space == SearchSpace.from_schema(**{**SPACE, "batch_sizes": (16, 32)})
    with pytest.raises(TypeError, match="momentum"):
        SearchSpace.from_schema(**{**SPACE, "momentum": [0.9]})
    with pytest.raises(ConfigError, match="lr"):
        SearchSpace.from_schema(**{**SPACE, "lr": [0.1]})


def test_each_search_dimension_is_one_schema_entry_and_one_field() -> None:
    """suggest and run_overrides follow the schema's annotations: nothing else to edit."""
    dims = search_dimensions()
    assert [d.key for d in dims] == [f.name for f in dataclasses.fields(SearchSpace)]
    assert {d.sample for d in dims} <= set(SAMPLERS)
    for dim in dims:
        if dim.sets is not None:
            section, field = dim.sets.split(".")
            assert field in properties(section), dim
    params = {"optimizer": "adam", "lr": 0.01, "batch_size": 16, "freeze": "linear_probe"}
    assert run_overrides(params) == {
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"batch_size": 16},
    }


def test_suggest_samples_only_listed_dimensions_within_bounds() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    minimal = SearchSpace.from_schema(**SPACE)
    full = SearchSpace.from_schema(
        **SPACE,
        weight_decay=[1e-6, 1e-3],
        batch_sizes=[16, 64],
        freeze=["finetune", "linear_probe"],
    )
    trial = study.ask()
    assert set(suggest(trial, minimal)) == {"optimizer", "activation", "lr"}
    assert set(trial.params) == {"optimizer", "activation", "lr"}
    assert trial.distributions["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    study.tell(trial, 0.0)
    seen: dict[str, set[Any]] = {"optimizer": set(), "batch_size": set(), "freeze": set()}
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, full)
        study.tell(trial, 0.0)
        assert set(params) == {*SPACE_KEYS, "weight_decay", "batch_size", "freeze"}
        assert params == trial.params
        assert 1e-4 <= params["lr"] <= 1e-1 and 1e-6 <= params["weight_decay"] <= 1e-3
        assert params["activation"] in full.activations
        for key in seen:
            seen[key].add(params[key])
    assert trial.distributions["weight_decay"].log
    assert trial.distributions["freeze"] == CategoricalDistribution(full.freeze)
    assert seen == {
        "optimizer": {"sgd", "adam"},
        "batch_size": {16, 64},
        "freeze": {"finetune", "linear_probe"},
    }


def test_open_study_uses_configured_pruner_and_a_journal_by_default(tmp_path: Path) -> None:
    expected = {"median": MedianPruner, "hyperband": HyperbandPruner, "none": NopPruner}
    for name, pruner in expected.items():
        cfg = sweep_cfg(n_trials=2, pruner=name, direction="minimize")
        study = open_study(cfg, tmp_path / name, STUDY, create=True)
        assert isinstance(study.pruner, pruner)
        assert study.direction == optuna.study.StudyDirection.MINIMIZE
        assert (tmp_path / name / "optuna.journal").exists()
    with pytest.raises(MedflowError, match="initialise"):
        open_study(sweep_cfg(n_trials=2), tmp_path / "empty", STUDY, create=False)


# --------------------------------------------------------------------------- init


def test_init_sweep_is_idempotent(tracker: Tracker, sweep_dir: Path) -> None:
    cfg = sweep_cfg(n_trials=2)
    first = init(cfg, sweep_dir, tracker)
    assert init(cfg, sweep_dir, tracker) == first
    runs = find_runs(tracker, EXPERIMENT)
    assert [run.info.run_id for run in runs] == [first]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["optuna_study"] == STUDY
    assert (sweep_dir / "parent_run_id.txt").read_text().strip() == first
    assert open_study(cfg, sweep_dir, STUDY, create=False).user_attrs[PARENT_RUN_ATTR] == first


# --------------------------------------------------------------------------- workers


@pytest.mark.slow
def test_concurrent_workers_finish_exactly_the_budget(
    tracker: Tracker, sweep_dir: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    cfg = sweep_cfg(n_trials=12, workers=4, epochs=3)
    parent = init(cfg, sweep_dir, tracker)
    objective = Quadratic(SPACE, epochs=3, sleep_s=0.05)
    procs = [spawn(cfg, objective, f"w{i}") for i in range(4)]
    finished = 0
    for proc in procs:
        out, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0, err
        finished += json.loads(out.strip().splitlines()[-1])["finished"]
    assert finished == 12

    trials = trials_of(cfg, sweep_dir)
    assert len(trials) == 12 and n_finished(trials) == 12
    runs = child_runs(tracker, parent)
    assert sorted(runs) == list(range(12))
    for trial in trials:
        run = runs[trial.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna_state"] == trial.state.name
        assert run.data.tags["optuna_study"] == STUDY and run.data.tags["stage"] == "sweep"
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.data.tags["worker"] == trial.user_attrs["worker"]
        assert float(run.data.params["optuna.lr"]) == pytest.approx(trial.params["lr"])
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(score(trial.params))
    assert len(find_runs(tracker, EXPERIMENT)) == 13  # the parent and 12 children
    assert not list((sweep_dir / "heartbeats").glob("trial_*"))


def test_claims_are_atomic_under_contention(tracker: Tracker, sweep_dir: Path) -> None:
    """Eight workers (threads, each with its own storage like a process) race for 3 trials."""
    cfg = sweep_cfg(n_trials=3, workers=8, pruner="none")
    init(cfg, sweep_dir, tracker)
    objective = Quadratic(SPACE, epochs=2, sleep_s=0.2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [
            pool.submit(
                run_worker, cfg, sweep_dir, STUDY, objective, tracker, EXPERIMENT, TAGS, f"t{i}"
            )
            for i in range(8)
        ]
        done = [future.result(timeout=WAIT_S) for future in futures]
    assert sum(done) == 3
    trials = trials_of(cfg, sweep_dir)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3


def test_failed_trial_is_retried_with_same_params_within_budget(
    tracker: Tracker, sweep_dir: Path
) -> None:
    cfg = sweep_cfg(n_trials=4, pruner="none")
    parent = init(cfg, sweep_dir, tracker)
    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE, fail_first=(1,))) == 4

    trials = trials_of(cfg, sweep_dir)
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,  # the retry, popped before any new trial
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    retry = trials[2]
    assert retry.params == trials[1].params
    assert retry.user_attrs["retry_of"] == 1
    runs = child_runs(tracker, parent)
    assert runs[1].info.status == "FAILED"
    assert "injected failure" in runs[1].data.tags["failure_reason"]
    assert runs[2].data.tags["retry_of"] == "1"
    assert {runs[n].info.status for n in (0, 2, 3, 4)} == {"FINISHED"}


def test_retries_are_capped_and_repeated_failures_stop_the_worker(
    tracker: Tracker, sweep_dir: Path
) -> None:
    cfg = sweep_cfg(n_trials=3, max_retry=2)
    init(cfg, sweep_dir, tracker)
    with pytest.raises(MedflowError, match=r"5 trials in a row failed.*injected"):
        work(
            cfg, sweep_dir, tracker, Quadratic(SPACE, always_fail=True), max_consecutive_failures=5
        )

    trials = trials_of(cfg, sweep_dir)
    # The last failure's retry waits for the next run of the worker.
    assert [t.state for t in trials] == [TrialState.FAIL] * 5 + [TrialState.WAITING]
    assert [t.user_attrs.get("retry_of") for t in trials] == [None, 0, 0, None, 3, 3]
    assert trials[2].user_attrs["retry_history"] == [0, 1]
    assert trials[1].params == trials[2].params == trials[0].params
    assert trials[3].params != trials[0].params  # after two retries a fresh trial


def test_trials_of_live_workers_are_left_alone_dead_ones_retried(
    tracker: Tracker, sweep_dir: Path
) -> None:
    cfg = sweep_cfg(n_trials=3, heartbeat_grace_s=60, pruner="none")
    init(cfg, sweep_dir, tracker)
    study = open_study(cfg, sweep_dir, STUDY, create=False)
    beats = sweep_dir / "heartbeats"
    beats.mkdir()
    for number, age_s in ((0, 600), (1, 0)):  # on another host: judged by heartbeat age only
        trial = study.ask()
        suggest(trial, SearchSpace.from_schema(**SPACE))
        trial.set_user_attr("worker_host", "another-node")
        trial.set_user_attr("worker_pid", 1)
        (beats / f"trial_{number}").touch()
        os.utime(beats / f"trial_{number}", (time.time() - age_s,) * 2)

    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE)) == 2
    trials = trials_of(cfg, sweep_dir)
    assert [t.state for t in trials] == [
        TrialState.FAIL,
        TrialState.RUNNING,  # fresh heartbeat: still counted against the budget
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert trials[2].user_attrs["retry_of"] == 0 and trials[2].params == trials[0].params


def test_worker_ends_runs_left_running_after_their_trial_was_told(
    tracker: Tracker, sweep_dir: Path
) -> None:
    cfg = sweep_cfg(n_trials=1, pruner="none")
    parent = init(cfg, sweep_dir, tracker)
    study = open_study(cfg, sweep_dir, STUDY, create=False)
    trial = study.ask()
    suggest(trial, SearchSpace.from_schema(**SPACE))
    run_id = tracker.start_run(EXPERIMENT, "trial 0", {**TAGS, "trial_number": "0"}, parent)
    trial.set_user_attr("mlflow_run_id", run_id)
    study.tell(trial, 0.5)  # ... and its worker died before ending the run

    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE)) == 0
    run = tracker.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["optuna_state"] == "COMPLETE"


def test_a_told_trial_whose_live_worker_is_still_ending_its_run_is_left_alone(
    tracker: Tracker, sweep_dir: Path
) -> None:
    """Worker A tells the study, then ends the trial's run; a worker starting in between
    must not take that run for an orphan (it did, and logged a false warning)."""
    cfg = sweep_cfg(n_trials=1, pruner="none", heartbeat_grace_s=60)
    parent = init(cfg, sweep_dir, tracker)
    study = open_study(cfg, sweep_dir, STUDY, create=False)
    trial = study.ask()
    suggest(trial, SearchSpace.from_schema(**SPACE))
    trial.set_user_attr("worker_host", "another-node")  # judged by its heartbeat only
    trial.set_user_attr("worker_pid", 1)
    heartbeat = sweep_dir / "heartbeats" / "trial_0"
    heartbeat.parent.mkdir()
    heartbeat.touch()
    run_id = tracker.start_run(EXPERIMENT, "trial 0", {**TAGS, "trial_number": "0"}, parent)
    study.tell(trial, 0.5)

    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE)) == 0
    assert tracker.get_run(run_id).info.status == "RUNNING"

    os.utime(heartbeat, (time.time() - 600,) * 2)  # worker A died before ending the run
    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE)) == 0
    assert tracker.get_run(run_id).info.status == "FINISHED"


def test_resume_after_sigkill_retries_the_killed_trial_only(
    tracker: Tracker, sweep_dir: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    cfg = sweep_cfg(n_trials=3, workers=1, pruner="none", epochs=4)
    parent = init(cfg, sweep_dir, tracker)
    proc = spawn(cfg, Quadratic(SPACE, epochs=4, sleep_s=0.3), "doomed")
    wait_for(lambda: reported_epoch(cfg, sweep_dir, 1), proc, "trial 1 reported an epoch")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=WAIT_S)

    before = trials_of(cfg, sweep_dir)
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    assert child_runs(tracker, parent)[1].info.status == "RUNNING"
    # Same host, worker gone: recovered at once although the heartbeat grace is 300 s.
    started = time.monotonic()
    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE, epochs=4)) == 2
    assert time.monotonic() - started < 60

    after = trials_of(cfg, sweep_dir)
    assert [t.state for t in after] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert (after[0].value, after[0].params) == (before[0].value, before[0].params)
    assert after[0].datetime_complete == before[0].datetime_complete
    assert after[2].params == before[1].params and after[2].user_attrs["retry_of"] == 1
    runs = child_runs(tracker, parent)
    assert runs[1].info.status == "KILLED"
    assert runs[1].data.tags["optuna_state"] == "FAIL"
    assert {runs[n].info.status for n in (0, 2, 3)} == {"FINISHED"}
    assert n_finished(after) == 3


def test_sigterm_fails_the_trial_and_kills_its_run(
    tracker: Tracker, sweep_dir: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    cfg = sweep_cfg(n_trials=2, workers=1, pruner="none", epochs=20)
    parent = init(cfg, sweep_dir, tracker)
    proc = spawn(cfg, Quadratic(SPACE, epochs=20, sleep_s=0.3), "terminated")
    wait_for(lambda: reported_epoch(cfg, sweep_dir, 0), proc, "trial 0 reported an epoch")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode != 0 and "Terminated" in err

    trials = trials_of(cfg, sweep_dir)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["retry_of"] == 0
    run = child_runs(tracker, parent)[0]
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"].startswith("Terminated")
    assert not (sweep_dir / "heartbeats" / "trial_0").exists()


def test_rdb_storage_url_is_accepted(tracker: Tracker, sweep_dir: Path, tmp_path: Path) -> None:
    cfg = sweep_cfg(n_trials=2, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    init(cfg, sweep_dir, tracker)
    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE)) == 2
    assert n_finished(trials_of(cfg, sweep_dir)) == 2
    assert not (sweep_dir / "optuna.journal").exists()


# --------------------------------------------------------------------------- summarize


def test_summarize_writes_best_params_and_trials_csv(
    tracker: Tracker, sweep_dir: Path, tmp_path: Path
) -> None:
    cfg = sweep_cfg(n_trials=4, pruner="none", epochs=3)
    init(cfg, sweep_dir, tracker)
    work(cfg, sweep_dir, tracker, Quadratic(SPACE, fail_first=(1,)))
    study = open_study(cfg, sweep_dir, STUDY, create=False)
    # One more, pruned after 2 of 3 epochs, so that every state shows up.
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        Quadratic(SPACE, prune_at=2)(trial, "none")
    study.tell(trial, state=TrialState.PRUNED)

    out = tmp_path / "out"
    summary = summarize(cfg, sweep_dir, STUDY, out)
    trials = study.trials
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert json.loads((out / "best_params.json").read_text()) == summary
    assert summary["value"] == best.value and summary["number"] == best.number
    assert summary["params"] == best.params
    assert summary["mlflow_run_id"] == best.user_attrs["mlflow_run_id"]
    assert (summary["n_complete"], summary["n_pruned"], summary["n_failed"]) == (4, 1, 1)
    assert (summary["metric"], summary["direction"]) == ("val_accuracy", "maximize")

    with (out / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "number",
        "slot",
        "generation",
        "state",
        "value",
        "param_activation",
        "param_lr",
        "param_optimizer",
        "epochs_run",
        "duration_s",
        "mlflow_run_id",
    ]
    assert [row["state"] for row in rows] == [t.state.name for t in trials]
    assert [row["epochs_run"] for row in rows] == ["3", "", "3", "3", "3", "2"]
    assert rows[1]["value"] == "" and float(rows[0]["value"]) == trials[0].value
    assert float(rows[0]["param_lr"]) == trials[0].params["lr"]
    assert rows[0]["mlflow_run_id"] == trials[0].user_attrs["mlflow_run_id"]
    assert float(rows[0]["duration_s"]) >= 0


def test_summarize_without_a_completed_trial_is_an_error(
    tracker: Tracker, sweep_dir: Path, tmp_path: Path
) -> None:
    cfg = sweep_cfg(n_trials=2, pruner="none")
    parent = init(cfg, sweep_dir, tracker)
    assert work(cfg, sweep_dir, tracker, Quadratic(SPACE, prune_at=1)) == 2
    runs = child_runs(tracker, parent)
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    assert {run.data.tags["optuna_state"] for run in runs.values()} == {"PRUNED"}
    with pytest.raises(MedflowError, match="no trial completed"):
        summarize(cfg, sweep_dir, STUDY, tmp_path / "out")
    assert not (tmp_path / "out" / "best_params.json").exists()


# --------------------------------------------------------------------------- the sweep stage

STAGE_CONFIG = tiny_mlp_study_config(
    train={"monitor": "val_accuracy"},
    sweep={
        "n_trials": 3,
        "workers": 1,
        "epochs": 2,
        "pruner": "none",
        "space": {
            "optimizers": ["sgd", "adam"],
            "activations": ["relu"],
            "lr": [0.001, 0.1],
            "batch_sizes": [16, 32],
        },
    },
    refine={"modes": ["scratch"]},
)

# init and best in a fresh interpreter: they must not pay for torch, scikit-learn, matplotlib.
LIGHT_JOB = """
import json, sys
from pathlib import Path
from medflow.config.schema import validate_config
from medflow.config.types import MedflowConfig
from medflow.layout import Layout
from medflow.stages import sweep
from medflow.stages.context import StageContext
a = json.loads(sys.argv[1])
cfg = MedflowConfig.from_validated(validate_config(a["config"]), "test")
ctx = StageContext(Layout(Path(a["results"])), cfg.tracking)
getattr(sweep, a["job"])(ctx, cfg.study("tiny"))
print(json.dumps(sorted(m for m in ("torch", "sklearn", "matplotlib") if m in sys.modules)))
"""


def _light_job(job: str, config: dict[str, Any], results: Path) -> list[str]:
    args = json.dumps({"job": job, "config": config, "results": str(results)})
    proc = subprocess.run(
        [sys.executable, "-c", LIGHT_JOB, args],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sweep_stage_trials_train_through_tracked_training(tracker: Tracker, tmp_path: Path):
    # Imported here: the worker processes above import this module and need none of these.
    from medflow.config.schema import validate_config
    from medflow.config.types import MedflowConfig
    from medflow.layout import Layout
    from medflow.stages import sweep
    from medflow.stages.context import StageContext
    from medflow.stages.prepare import prepare_dataset

    config = {**STAGE_CONFIG, "tracking": {"uri": tracker.tracking_uri}}
    cfg = MedflowConfig.from_validated(validate_config(config), "test")
    layout = Layout(tmp_path / "results")
    prepare_dataset(cfg.dataset("digits"), layout.prepared("digits"))
    ctx = StageContext(layout, cfg.tracking)
    study = cfg.study("tiny")

    assert _light_job("init", config, layout.results) == []
    assert sweep.worker(ctx, study, "0") == 3
    assert _light_job("best", config, layout.results) == []

    best = json.loads(layout.sweep_best("tiny").read_text())
    assert set(best["params"]) == {"optimizer", "activation", "lr", "batch_size"}
    assert layout.sweep_trials("tiny").exists()
    parent = layout.sweep_parent_run_id("tiny").read_text().strip()
    assert tracker.get_run(parent).data.tags["best_trial"] == str(best["number"])
    target_hash = PreparedDataset.open(layout.prepared("digits")).content_hash
    name = optuna_study_name(study, target_hash)
    optuna_study = open_study(sweep_cfg(n_trials=3), layout.sweep("tiny"), name, create=False)
    trials = {t.number: t for t in optuna_study.trials}
    experiment = cfg.tracking.experiment("tiny")
    runs = child_runs_in(tracker, experiment, parent)
    assert sorted(runs) == sorted(trials) == [0, 1, 2]
    for number, run in runs.items():
        trial = trials[number]
        params, metrics = run.data.params, run.data.metrics
        assert run.info.status == "FINISHED" and run.data.tags["mode"] == "scratch"
        assert (params["mode"], params["train.epochs"]) == ("scratch", "2")
        assert params["train.batch_size"] == str(trial.params["batch_size"])
        assert params["optim.name"] == trial.params["optimizer"]
        assert params["dataset_hash"] == run.data.tags["dataset_hash"]
        assert metrics["best_val_accuracy"] == pytest.approx(trial.value)
        artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
        assert "config.json" in artifacts and "learning_curve.png" not in artifacts


def child_runs_in(tracker: Tracker, experiment: str, parent: str) -> dict[int, Any]:
    runs = find_runs(tracker, experiment, f"tags.`{PARENT_RUN_TAG}` = '{parent}'")
    return {int(run.data.tags["trial_number"]): run for run in runs}
