"""Sweep modes: what ``sweep.reproducible: true`` (batch-synchronous generations) costs against
free-running workers, in wall time and in the best value found, at 2 and 4 workers.

Each sweep is medflow's: ``init_sweep`` and W worker processes running ``run_worker`` on one
Optuna journal and a real SQLite MLflow store, every trial training medflow's ``train()`` (MLP
on the full sklearn digits set) with the median pruner, TPE design, same budget and seed. The
two modes run interleaved (rotating who goes first) for ``--rounds`` rounds; the ratio is the
median of per-round ratios reproducible / free-running. Workers are forked from a fork
server that has imported this module (torch, Optuna, MLflow, medflow) and MLflow's SQL
store, so their start-up is not what is timed; not from this process, whose earlier
training may have left autograd in a state a fork cannot use ("Unable to handle autograd's
threading in combination with fork-based multiprocessing", seen in the test suite).
"""

from __future__ import annotations

import multiprocessing
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.common import Options, interleaved_many, row, write_json
from bench.sweep_efficiency import METRIC, digits
from medflow.hpo.space import SearchSpace, SweepConfig, suggest
from medflow.hpo.trials import summarize
from medflow.hpo.worker import init_sweep, run_worker
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.tracking.client import Tracker

GOAL = "<= 1.25"  # reproducible may cost at most a quarter more wall time
EXPERIMENT = "bench/sweep-modes"
SPACE = SearchSpace.from_schema(
    optimizers=["sgd", "momentum", "adam", "rmsprop"], activations=["relu", "tanh"], lr=[1e-3, 0.3]
)


@dataclass(frozen=True)
class Budget:
    n_trials: int
    epochs: int
    workers: tuple[int, ...]


FULL = Budget(n_trials=16, epochs=6, workers=(2, 4))
QUICK = Budget(n_trials=2, epochs=1, workers=(2,))


@dataclass(frozen=True)
class Objective:
    data: TrainData
    epochs: int

    def __call__(self, trial: optuna.Trial, run_id: str) -> float:
        params = suggest(trial, SPACE)
        run = RunConfig(
            model=ModelConfig.from_schema(
                arch="mlp", hidden_sizes=(64,), activation=params["activation"]
            ),
            optim=OptimConfig.from_schema(
                name=params["optimizer"], lr=params["lr"], schedule="constant"
            ),
            train=TrainConfig.from_schema(
                epochs=self.epochs, batch_size=32, patience=0, monitor=METRIC, seed=0
            ),
        )

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics[METRIC], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return train(run, self.data, on_epoch=report).best_value


def _init(cfg: SweepConfig, folder: Path, uri: str) -> None:
    init_sweep(
        cfg, folder / "sweep", "bench", Tracker(uri, str(folder / "artifacts")), EXPERIMENT, {}
    )


def _worker(cfg: SweepConfig, folder: Path, uri: str, objective: Objective, name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracker = Tracker(uri, str(folder / "artifacts"))
    run_worker(
        cfg, folder / "sweep", "bench", objective, tracker, EXPERIMENT, {}, name, space=SPACE
    )


def _in_children(targets: list[tuple[Any, tuple[Any, ...]]]) -> None:
    """Child processes, so that this one never opens a sweep's store (MLflow caches a store's
    connection pool per URI, which a fork must not share)."""
    server = multiprocessing.get_context("forkserver")
    # MLflow imports its SQL store (SQLAlchemy, alembic) at the first store opened: preloaded,
    # each worker is ready in ~0.1 s instead of ~0.9 s.
    server.set_forkserver_preload([__name__, "mlflow.store.tracking.sqlalchemy_store"])
    procs = [server.Process(target=target, args=args) for target, args in targets]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"bench sweep process exited {proc.exitcode}")


@dataclass
class Sweeps:
    """Runs one whole sweep per call, recording its best value."""

    root: Path
    template_db: Path
    objective: Objective
    budget: Budget
    made: int = 0

    def sweep(self, reproducible: bool, workers: int, best: list[float]) -> None:
        self.made += 1
        folder = self.root / f"sweep{self.made}"
        folder.mkdir()
        shutil.copyfile(self.template_db, folder / "mlflow.db")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        cfg = SweepConfig.from_schema(
            n_trials=self.budget.n_trials,
            workers=workers,
            epochs=self.budget.epochs,
            reproducible=reproducible,
            metric=METRIC,
            direction="maximize",
        )
        _in_children([(_init, (cfg, folder, uri))])
        _in_children(
            [(_worker, (cfg, folder, uri, self.objective, f"w{i}")) for i in range(workers)]
        )
        summary = summarize(cfg, folder / "sweep", "bench", folder / "out", SPACE)
        best.append(summary["value"])


def bench(options: Options) -> dict[str, Any]:
    budget = QUICK if options.quick else FULL
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="medflow-bench-modes-") as tmp:
        root = Path(tmp)
        objective = Objective(digits(root / "digits"), budget.epochs)
        template = root / "template.db"
        Tracker(f"sqlite:///{template}")  # migrate once (~10 s)
        sweeps = Sweeps(root, template, objective, budget)
        results: dict[str, Any] = {}
        for workers in budget.workers:
            best: dict[str, list[float]] = {"free": [], "reproducible": []}
            timing = interleaved_many(
                {
                    "free": lambda w=workers, b=best: sweeps.sweep(False, w, b["free"]),
                    "reproducible": lambda w=workers, b=best: sweeps.sweep(
                        True, w, b["reproducible"]
                    ),
                },
                options.rounds,
                baseline="free",
            )
            results[str(workers)] = {
                **timing,
                "best_values": best,  # the first of each list is the warm-up run
                "best_median": {k: statistics.median(v) for k, v in best.items()},
            }
    return {
        "budget": {
            "n_trials": budget.n_trials,
            "epochs": budget.epochs,
            "generation_size": SweepConfig.from_schema(
                metric=METRIC, direction="maximize"
            ).generation_size,
        },
        "space": {"optimizers": SPACE.optimizers, "activations": SPACE.activations, "lr": SPACE.lr},
        "by_workers": results,
    }


def run(options: Options) -> list[dict[str, Any]]:
    result = bench(options)
    rows = []
    for workers, r in result["by_workers"].items():
        ratio = r["ratio_over_baseline"]["reproducible"]
        best = r["best_median"]
        note = (
            f"median of {r['rounds']} rounds (range {ratio['min']:.2f}-{ratio['max']:.2f}); "
            f"free {r['median_s']['free']:.1f} s, reproducible {r['median_s']['reproducible']:.1f}"
            f" s; best {METRIC} free {best['free']:.4f} vs reproducible "
            f"{best['reproducible']:.4f} (median)"
        )
        rows.append(
            row(
                f"sweep modes: reproducible/free wall, {workers} workers",
                ratio["median"],
                GOAL,
                note,
            )
        )
        print(f"  {workers} workers: reproducible/free wall time {ratio['median']:.3f}; {note}")
    write_json(
        "sweep_modes",
        {"description": __doc__, "quick": options.quick, "goal": GOAL, **result, "rows": rows},
        options,
    )
    return rows
