"""One MLflow-tracked training run: params, per-epoch metrics, curves, model, status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medflow.ml.loop import EpochTracker, Result, RunConfig, TrainData, train
from medflow.ml.models import Classifier
from medflow.runtime.progress import EpochProgress
from medflow.tracking.client import Tracker, mark_run_failed, tracked_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@dataclass
class MlflowEpochLogger:
    """Sends each epoch's metrics to one run; the tracker batches them."""

    tracker: Tracker
    run_id: str

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics(self.run_id, metrics, step=epoch)


@dataclass
class EpochFanOut:
    """Passes each epoch's metrics to several trackers (MLflow and progress)."""

    trackers: Sequence[EpochTracker]

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_epoch(epoch, metrics)


def progress_label(run_name: str, tags: Mapping[str, str]) -> str:
    study = tags.get("study")
    return f"{study} {run_name}" if study else run_name


def finish_progress(progress: EpochProgress, result: Result) -> None:
    if result.status == "diverged":
        progress.finish(f"diverged: {result.reason}")
    else:
        progress.finish(f"stopped early; best epoch {result.best_epoch}")


def learning_curve_figure(result: Result, title: str = "") -> Figure:
    # Imported here: sweep workers, which draw none, save matplotlib's 0.3 s import.
    from matplotlib.figure import Figure

    epochs = range(1, len(result.history) + 1)
    fig = Figure(figsize=(9, 3.4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    for key in ("train_loss", "val_loss"):
        loss_ax.plot(epochs, [h[key] for h in result.history], label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss")
    loss_ax.legend()
    metric = result.monitor if result.monitor != "val_loss" else "val_accuracy"
    if result.history and metric in result.history[0]:
        metric_ax.plot(epochs, [h[metric] for h in result.history], color="tab:green")
        metric_ax.axvline(result.best_epoch, color="grey", linestyle=":", label="best epoch")
        metric_ax.set(xlabel="epoch", ylabel=metric)
        metric_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def summary_metrics(result: Result) -> dict[str, float]:
    """The best epoch's metrics as best_*; what sweeps and reports compare."""
    best = {f"best_{k}": v for k, v in result.best_metrics.items() if k.startswith("val_")}
    return {
        **best,
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(result.epochs_run),
        "train_seconds": result.train_seconds,
    }


def tracked_training(
    run: RunConfig,
    data: TrainData,
    tracker: Tracker,
    *,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
    model: Classifier | None = None,
    checkpoint: Path | None = None,
    log_model: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Result, str]:
    """Train inside an MLflow run that always ends FINISHED, FAILED or KILLED."""
    with tracked_run(tracker, experiment, run_name, tags, parent_run_id) as run_id:
        tracker.log_params(run_id, {**run.to_dict(), "dataset_hash": data.dataset_hash})
        tracker.log_dict(run_id, run.to_dict(), "config.json")
        progress = EpochProgress(progress_label(run_name, tags), run.train.epochs)
        result = train(
            run,
            data,
            EpochFanOut([MlflowEpochLogger(tracker, run_id), progress]),
            model=model,
            checkpoint=checkpoint,
            on_epoch=on_epoch,
        )
        finish_progress(progress, result)
        if result.best_epoch:
            tracker.log_metrics(run_id, summary_metrics(result), step=result.best_epoch)
        if result.history:
            figure = learning_curve_figure(result, run_name)
            tracker.log_figure(run_id, figure, "learning_curve.png")
        if result.status == "diverged":
            mark_run_failed(tracker, run_id, f"diverged: {result.reason}")
        elif log_model:
            tracker.log_torch_model(run_id, result.model, data.x_val[:2].numpy())
    return result, run_id
