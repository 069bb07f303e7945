"""Factorial design and reproducible sweeps: the plan, the generation pruner, and the proof
that 1, 2 or 3 workers with irregular timing, or a worker killed mid-generation, end with the
same trials. Real Optuna journals, a real SQLite MLflow store, real worker processes training
a tiny MLP on sklearn digits through the sweep stage's CLI.

``MEDFLOW_TEST_TRIAL_DELAY_S`` (test-only, read by the sweep stage's objective) sleeps a random
half to all of that many seconds after each epoch, so that the workers' timing differs per run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from medflow.config.schema import validate_config
from medflow.config.types import MedflowConfig
from medflow.errors import ConfigError
from medflow.hpo.cells import cell_summary
from medflow.hpo.design import GENERATION_ATTR, SweepPlan
from medflow.hpo.pruning import GenerationMedianPruner
from medflow.hpo.space import SearchSpace, SweepConfig
from medflow.hpo.study import pruner
from medflow.stages.prepare import prepare_dataset
from medflow.tracking.client import Tracker
from tests.conftest import BIN, sqlite_uri, tiny_mlp_study_config
from tests.test_sweep import SPACE, Quadratic, spawn, trials_of, work
from tests.test_sweep import init as init_study
from tests.test_sweep import sweep_cfg as quadratic_cfg

__all__ = ["spawn"]  # the worker-process fixture, shared with tests/test_sweep.py

WAIT_S = 240  # upper bound for any wait on worker processes
DELAY_ENV = "MEDFLOW_TEST_TRIAL_DELAY_S"
# 2 optimizers x 2 activations = 4 cells x 2 trials = 8 trials in generations of 3 (3, 3, 2):
# generations 1 and 2 are pruned against generation 0's trials.
SWEEP = {
    "design": "factorial",
    "trials_per_cell": 2,
    "generation_size": 3,
    "epochs": 3,
    "pruner": "median",
    "space": {
        "optimizers": ["sgd", "adam"],
        "activations": ["relu", "tanh"],
        "lr": [0.001, 0.3],
        "weight_decay": [0.00001, 0.01],
    },
}
COMPARED = ["slot", "generation", "state", "value", "epochs_run"]


def sweep_cfg(**values: Any) -> SweepConfig:
    return SweepConfig.from_schema(**{"metric": "val_loss", "direction": "minimize", **values})


# --------------------------------------------------------------------------- the plan


def test_factorial_plan_gives_every_cell_trials_per_cell_slots_at_the_same_points() -> None:
    space = SearchSpace.from_schema(**{**SWEEP["space"], "freeze": ["finetune", "linear_probe"]})
    cfg = sweep_cfg(design="factorial", trials_per_cell=3, n_trials=5, seed=7)
    plan = SweepPlan(cfg, space)
    assert len(plan.cells) == 2 * 2 * 2 and plan.n_trials == 24  # n_trials is not used
    slots = [plan.fixed_params(s) for s in range(plan.n_trials)]
    assert slots == [SweepPlan(cfg, space).fixed_params(s) for s in range(24)]  # seeded
    cells = Counter((p["optimizer"], p["activation"], p["freeze"]) for p in slots)
    assert set(cells.values()) == {3} and len(cells) == 8
    for replicate in range(3):
        chunk = slots[8 * replicate : 8 * (replicate + 1)]
        assert len({(p["lr"], p["weight_decay"]) for p in chunk}) == 1  # same point per cell
    points = {(p["lr"], p["weight_decay"]) for p in slots}
    assert len(points) == 3
    assert all(0.001 <= lr <= 0.3 and 1e-5 <= wd <= 0.01 for lr, wd in points)
    assert list(slots[0]) == ["optimizer", "activation", "lr", "weight_decay", "freeze"]
    other_seed = SweepPlan(sweep_cfg(design="factorial", trials_per_cell=3, seed=8), space)
    assert other_seed.fixed_params(0) != slots[0]
    assert SweepPlan(sweep_cfg(design="tpe", n_trials=5), space).n_trials == 5


def test_rankings_pair_levels_by_the_other_choices_and_stay_in_the_metric_range() -> None:
    """adam is 0.1 below sgd under every activation (+-0.02), while the activations differ by
    1.0: the marginal intervals overlap, the paired gap's interval excludes 0."""
    space = SearchSpace.from_schema(
        optimizers=["sgd", "adam"], activations=["sigmoid", "tanh", "relu"], lr=[0.001, 0.3]
    )
    plan = SweepPlan(sweep_cfg(design="factorial", trials_per_cell=1), space)
    base = {"sigmoid": 2.0, "tanh": 1.0, "relu": 0.05}
    noise = {"sigmoid": 0.02, "tanh": -0.02, "relu": 0.0}
    values = {("sgd", a): v + 0.1 for a, v in base.items()}
    values |= {("adam", a): v + noise[a] for a, v in base.items()}
    dist = {
        "optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
        "activation": optuna.distributions.CategoricalDistribution(list(base)),
    }
    trials = [
        create_trial(params={"optimizer": o, "activation": a}, distributions=dist, value=v)
        for (o, a), v in values.items()
    ]
    doc = cell_summary(plan, trials, "val_loss")
    assert all(c["n_trials"] == 1 for c in doc["cells"]) and len(doc["cells"]) == 6
    adam, sgd = doc["rankings"]["optimizer"]
    assert (adam["level"], adam["rank"], sgd["level"], sgd["rank"]) == ("adam", 1, "sgd", 2)
    assert adam["low"] == 0.0  # the t-interval reaches below 0; a loss cannot
    assert sgd["low"] < adam["high"]  # the marginal means cannot tell them apart ...
    assert sgd["gap"] == pytest.approx(0.1)
    assert 0 < sgd["gap_low"] < 0.1 < sgd["gap_high"]  # ... the paired gap can
    assert adam["gap"] is None  # the reference level
    relu = doc["rankings"]["activation"][0]
    assert relu["level"] == "relu" and relu["n_cells"] == 2


def test_hyperband_is_refused_in_a_reproducible_sweep() -> None:
    with pytest.raises(ConfigError, match=r"sweep\.pruner: hyperband is not reproducible"):
        pruner(sweep_cfg(pruner="hyperband"))
    assert pruner(sweep_cfg(pruner="hyperband", reproducible=False)) is not None


def test_generation_pruner_judges_against_earlier_generations_only() -> None:
    """A trial of generation 1 is compared with generation 0 at the same epoch; trials of its
    own or later generations, however good, do not count."""
    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.FloatDistribution(0, 1)

    def add(generation: int, curve: list[float]) -> None:
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=max(curve),
                params={"x": 0.5},
                distributions={"x": dist},
                intermediate_values=dict(enumerate(curve, start=1)),
                user_attrs={GENERATION_ATTR: generation},
            )
        )

    for _ in range(3):
        add(0, [0.2, 0.4])
    for _ in range(3):
        add(1, [0.9, 0.9])  # same generation: ignored
    judge = GenerationMedianPruner(n_startup_trials=3, n_warmup_steps=1)

    def trial(generation: int, value: float) -> optuna.trial.FrozenTrial:
        return create_trial(
            state=TrialState.RUNNING,
            intermediate_values={1: value},
            user_attrs={GENERATION_ATTR: generation},
        )

    assert not judge.prune(study, trial(1, 0.3))  # above generation 0's median 0.2
    assert judge.prune(study, trial(1, 0.1))
    assert not judge.prune(study, trial(0, 0.0))  # nothing earlier than generation 0
    assert judge.prune(study, trial(2, 0.3))  # generation 1 counts now: median 0.55


# --------------------------------------------------------------------------- the proof

CONFIG = tiny_mlp_study_config(
    train={"monitor": "val_loss", "epochs": 3, "batch_size": 16},
    sweep=SWEEP,
    refine={"modes": ["scratch"]},
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> str:
    """One MLflow store for the module (each sweep its own results folder and runs)."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    shutil.copyfile(migrated_db, db)
    return sqlite_uri(db)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = MedflowConfig.from_validated(validate_config(CONFIG), "test")
    folder = tmp_path_factory.mktemp("prepared") / "digits"
    prepare_dataset(cfg.dataset("digits"), folder)
    return folder


class Sweep:
    """One sweep in its own results folder, run through the CLI as Snakemake's rules do."""

    def __init__(self, root: Path, store: str, prepared: Path, delay_s: float) -> None:
        self.results = root / "results"
        shutil.copytree(prepared, self.results / "data" / "digits")
        self.config = root / "config.yaml"
        self.config.write_text(yaml.safe_dump({**CONFIG, "tracking": {"uri": store}}))
        self.env = {**os.environ, DELAY_ENV: str(delay_s), "PATH": f"{BIN}:{os.environ['PATH']}"}
        self.procs: list[subprocess.Popen[str]] = []

    def command(self, job: str, *extra: str) -> list[str]:
        return [
            str(BIN / "medflow"),
            job,
            "--study",
            "tiny",
            "--config",
            str(self.config),
            "--results",
            str(self.results),
            *extra,
        ]

    def run(self, job: str) -> None:
        proc = subprocess.run(
            self.command(job), env=self.env, capture_output=True, text=True, timeout=WAIT_S
        )
        assert proc.returncode == 0, proc.stderr

    def start_worker(self, name: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.command("sweep-worker", "--worker", name),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def wait(self, procs: list[subprocess.Popen[str]]) -> None:
        for proc in procs:
            _, err = proc.communicate(timeout=WAIT_S)
            assert proc.returncode == 0, err

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=WAIT_S)

    def complete(self, workers: int) -> None:
        self.run("sweep-init")
        self.wait([self.start_worker(f"w{i}") for i in range(workers)])
        self.run("sweep-best")

    def trials(self) -> pd.DataFrame:
        """trials.csv's finished rows by slot: what a rerun must reproduce (numbers, times
        and MLflow ids differ by design)."""
        df = pd.read_csv(self.results / "sweeps/tiny/trials.csv")
        df = df[df["state"] != "FAIL"]
        params = sorted(c for c in df.columns if c.startswith("param_"))
        return df[COMPARED + params].sort_values("slot").reset_index(drop=True)

    def best(self, *ignored: str) -> dict[str, Any]:
        best = json.loads((self.results / "sweeps/tiny/best_params.json").read_text())
        return {k: v for k, v in best.items() if k not in {"mlflow_run_id", *ignored}}

    def study(self) -> optuna.Study:
        journal = self.results / "sweeps/tiny/optuna.journal"
        storage = JournalStorage(JournalFileBackend(str(journal)))
        (name,) = optuna.get_all_study_names(storage)
        return optuna.load_study(study_name=name, storage=storage)


@pytest.fixture
def sweeps(tmp_path: Path, store: str, prepared: Path):
    made: list[Sweep] = []

    def make(name: str, delay_s: float) -> Sweep:
        sweep = Sweep(tmp_path / name, store, prepared, delay_s)
        made.append(sweep)
        return sweep

    yield make
    for sweep in made:
        sweep.kill_all()


@pytest.mark.slow
def test_one_two_or_three_workers_with_irregular_timing_give_the_same_trials(
    sweeps: Callable[[str, float], Sweep],
) -> None:
    runs = {}
    for workers in (1, 2, 3):
        sweep = sweeps(f"w{workers}", 0.05)
        sweep.complete(workers)
        runs[workers] = sweep
    reference = runs[1].trials()
    assert len(reference) == 8 and set(reference["state"]) <= {"COMPLETE", "PRUNED"}
    cells = Counter(zip(reference["param_optimizer"], reference["param_activation"], strict=True))
    assert set(cells.values()) == {2} and len(cells) == 4  # every cell, trials_per_cell each
    assert (reference["state"] == "PRUNED").any(), "the pruner decided something"
    for workers in (2, 3):
        pd.testing.assert_frame_equal(runs[workers].trials(), reference)
        assert runs[workers].best() == runs[1].best()
    workers_seen = {t.user_attrs["worker"] for t in runs[3].study().trials}
    assert len(workers_seen) > 1, "the three workers shared the trials"
    cells_doc = json.loads((runs[1].results / "sweeps/tiny/cells.json").read_text())
    assert len(cells_doc["cells"]) == 4
    assert all(c["n_trials"] == 2 and c["best"] is not None for c in cells_doc["cells"])
    assert [r["level"] for r in cells_doc["rankings"]["optimizer"]] != []
    assert {r["rank"] for r in cells_doc["rankings"]["activation"]} == {1, 2}


def _running_trial_of(sweep: Sweep, worker: str) -> bool:
    """Whether ``worker`` holds a RUNNING trial that has reported an epoch."""
    journal = sweep.results / "sweeps/tiny/optuna.journal"
    if not journal.exists() or not journal.stat().st_size:
        return False
    try:
        trials = sweep.study().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except (KeyError, ValueError):
        return False  # the study is being created
    return any(t.user_attrs.get("worker") == worker and t.intermediate_values for t in trials)


@pytest.mark.slow
def test_a_worker_killed_mid_generation_resumes_to_the_same_trials(
    sweeps: Callable[[str, float], Sweep],
) -> None:
    uninterrupted = sweeps("uninterrupted", 0.0)
    uninterrupted.complete(1)

    killed = sweeps("killed", 0.3)  # trials of 0.45 s or more: time to kill one mid-trial
    killed.run("sweep-init")
    doomed, survivor = killed.start_worker("doomed"), killed.start_worker("survivor")
    deadline = time.monotonic() + WAIT_S
    while not _running_trial_of(killed, "doomed"):
        assert doomed.poll() is None, "the doomed worker ended before it was killed"
        assert time.monotonic() < deadline, "timed out waiting for a trial to report an epoch"
        time.sleep(0.05)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=WAIT_S)
    left = killed.study().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert any(t.user_attrs["worker"] == "doomed" for t in left), "killed mid-trial"

    killed.wait([survivor, killed.start_worker("resumed")])
    killed.run("sweep-best")
    trials = killed.study().trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["worker"] for t in failed] == ["doomed"]
    assert any(t.user_attrs.get("retry_of") == failed[0].number for t in trials)
    pd.testing.assert_frame_equal(killed.trials(), uninterrupted.trials())
    assert killed.best("number", "n_failed") == uninterrupted.best("number", "n_failed")


def _by_slot(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[Any, ...]]:
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return sorted(
        (t.user_attrs["slot"], t.user_attrs["generation"], t.state, t.value, t.params) for t in done
    )


@pytest.mark.slow
def test_reproducible_tpe_gives_the_same_trials_with_one_or_three_workers(
    tracker: Tracker, tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """Generations of 5 over 14 trials: the last generation sees 10 finished trials, which
    is when TPE stops sampling at random and models them; the pruner acts from generation 1."""
    values = {"n_trials": 14, "generation_size": 5, "epochs": 3, "reproducible": True}
    objective = Quadratic(SPACE, epochs=3, jitter_s=0.02)
    one = quadratic_cfg(**values, workers=1)
    init_study(one, tmp_path / "one", tracker)
    assert work(one, tmp_path / "one", tracker, objective) == 14

    three = quadratic_cfg(**values, workers=3)
    init_study(three, tmp_path / "sweep", tracker)  # the folder spawn's workers use
    procs = [spawn(three, objective, f"w{i}") for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0, err
    reference = _by_slot(trials_of(one, tmp_path / "one"))
    assert [slot for slot, *_ in reference] == list(range(14))
    assert TrialState.PRUNED in {state for _, _, state, _, _ in reference}
    assert _by_slot(trials_of(three, tmp_path / "sweep")) == reference
    assert len({t.user_attrs["worker"] for t in trials_of(three, tmp_path / "sweep")}) > 1
