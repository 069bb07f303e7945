"""Logging cost: a training run with medflow's MLflow logging over the same run without.

Contenders, run interleaved in one process against a real SQLite store (migrated once):

- ``plain``: ``train(run, data)``, no tracker.
- ``metrics``: the same with ``MlflowEpochLogger`` (every epoch's metrics go to the Tracker,
  which batches them) plus the final ``flush`` that writes them to SQLite: the per-epoch cost.
  Its logging calls are also timed from the inside, which gives the same ratio without the
  run-to-run noise of two whole runs: (training + logging) / training, and ms per epoch.
- ``tracked``: what a tracked run adds around that: ``start_run``, ``log_params`` of the
  flattened config, the metrics, ``end_run``. Its excess over ``plain`` is a per-run constant
  (the learning-curve figure and the logged model, also per run, are measured by
  ``bench.workflow_overhead``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.common import Options, interleaved_many, row, timed, write_json
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.tracking.client import Tracker
from medflow.tracking.training import MlflowEpochLogger

GOAL = "<= 1.02"
_TEMPLATE: dict[str, Any] = {}


def store_template() -> tuple[Path, float]:
    """A migrated SQLite store (cached per process) and the seconds its migration took."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="medflow-bench-store-"))
        path = folder / "mlflow.db"
        seconds = timed(lambda: Tracker(f"sqlite:///{path}"))
        _TEMPLATE.update(path=path, seconds=seconds)
    return _TEMPLATE["path"], _TEMPLATE["seconds"]


@contextmanager
def fresh_tracker(quick: bool) -> Iterator[tuple[Tracker, float | None]]:
    """A Tracker on a copy of the migrated store (quick mode: a file store, no migration)."""
    with tempfile.TemporaryDirectory(prefix="medflow-bench-logging-") as tmp:
        if quick:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # only to skip the migration
            yield Tracker(Path(tmp, "mlruns").as_uri(), Path(tmp) / "art"), None
            return
        template, migration_s = store_template()
        db = Path(tmp) / "mlflow.db"
        shutil.copyfile(template, db)
        yield Tracker(f"sqlite:///{db}", Path(tmp) / "art"), migration_s


def image_data(n: int, size: int, classes: int = 10) -> TrainData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    val = max(64, n // 8)
    return TrainData("multiclass", classes, x[val:], y[val:], x[:val], y[:val])


def bench(options: Options) -> dict[str, Any]:
    # The default digits study's model (CNN width 32, depth 2) on 8x8 images.
    n, epochs = (256, 2) if options.quick else (2048, 6)
    rounds = options.rounds if options.quick else max(options.rounds, 7)  # a 2% effect: 7
    run = RunConfig(
        model=ModelConfig.from_schema(arch="cnn", width=32, depth=2),
        optim=OptimConfig.from_schema(name="adam", lr=1e-3, schedule="constant"),
        train=TrainConfig.from_schema(
            epochs=epochs, batch_size=128, patience=0, device="cpu", seed=0
        ),
    )
    data = image_data(n, 8)
    fixed: dict[str, list[float]] = {"start_run": [], "log_params": [], "end_run": []}
    history: list[dict[str, float]] = []
    inside: list[tuple[float, float]] = []  # (training s, logging s) of each "metrics" run

    with fresh_tracker(options.quick) as (tracker, migration_s):
        tracker.get_or_create_experiment("bench")
        # Runs for the "metrics" contender are started before and ended after the timing.
        run_ids = [
            tracker.start_run("bench", f"metrics {i}", {"stage": "bench"})
            for i in range(rounds + 1)
        ]
        open_runs = list(run_ids)

        def plain() -> None:
            history[:] = train(run, data).history

        def metrics() -> None:
            logger = TimedLogger(MlflowEpochLogger(tracker, run_id := open_runs.pop()))
            started = time.perf_counter()
            train(run, data, logger)
            training = time.perf_counter() - started - logger.seconds
            flushing = _step([], lambda: tracker.flush(run_id))[1]
            inside.append((training, logger.seconds + flushing))

        def tracked() -> None:
            run_id = _step(fixed["start_run"], lambda: tracker.start_run("bench", "t", {}))[0]
            _step(fixed["log_params"], lambda: tracker.log_params(run_id, run.to_dict()))
            train(run, data, MlflowEpochLogger(tracker, run_id))
            _step(fixed["end_run"], lambda: tracker.end_run(run_id))

        result = interleaved_many(
            {"plain": plain, "metrics": metrics, "tracked": tracked}, rounds, "plain"
        )
        for run_id in run_ids:
            tracker.end_run(run_id)
    return {
        "config": {
            "model": "cnn width 32 depth 2",
            "image": [1, 8, 8],
            "n_train": len(data.y_train),
            "epochs": epochs,
            "metrics_per_epoch": len(history[0]),
            "store": "file (quick mode)" if options.quick else "sqlite",
            "flush_interval_s": 15.0,
            "note": "end_run includes the flush of the buffered metrics",
        },
        "sqlite_migration_s_in_process": migration_s,
        "timed_inside": {
            "ratio_median": statistics.median((t + log) / t for t, log in inside[1:]),
            "logging_ms_per_epoch": statistics.median(log / epochs * 1e3 for _, log in inside[1:]),
            "runs": [{"training_s": t, "logging_s": log} for t, log in inside],
        },
        "per_run_seconds": {k: sorted(v)[len(v) // 2] for k, v in fixed.items() if v},
        **result,
    }


def _step(bucket: list[float], call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = call()
    bucket.append(time.perf_counter() - started)
    return out, bucket[-1]


class TimedLogger:
    """Wraps an epoch logger and adds up the seconds spent in its ``log_epoch`` calls."""

    def __init__(self, inner: MlflowEpochLogger) -> None:
        self.inner, self.seconds = inner, 0.0

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        started = time.perf_counter()
        self.inner.log_epoch(epoch, metrics)
        self.seconds += time.perf_counter() - started


def run(options: Options) -> list[dict[str, Any]]:
    result = bench(options)
    ratios, cpu = result["ratio_over_baseline"], result["cpu_ratio_over_baseline"]
    epochs = result["config"]["epochs"]
    fixed = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result["per_run_seconds"].items())
    inside = result["timed_inside"]
    rows = [
        row(
            f"logging: epoch time with per-epoch MLflow metrics / without ({epochs} epochs)",
            ratios["metrics"]["median"],
            GOAL,
            f"A/B range {ratios['metrics']['min']:.3f}-{ratios['metrics']['max']:.3f}, "
            f"cpu-time {cpu['metrics']['median']:.3f}",
        ),
        row(
            "logging: same, logging calls timed inside the run",
            inside["ratio_median"],
            GOAL,
            f"{inside['logging_ms_per_epoch']:.1f} ms per epoch of "
            f"{result['median_s']['plain'] / epochs * 1e3:.0f} ms",
        ),
        row(
            f"logging: whole tracked run / untracked ({epochs} epochs)",
            ratios["tracked"]["median"],
            None,
            f"range {ratios['tracked']['min']:.3f}-{ratios['tracked']['max']:.3f}, "
            f"cpu-time {cpu['tracked']['median']:.3f}; per run: {fixed}",
        ),
    ]
    write_json(
        "logging_cost",
        {"description": __doc__, "quick": options.quick, "goal": GOAL, **result, "rows": rows},
        options,
    )
    return rows
