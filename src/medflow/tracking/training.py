"""One MLflow-tracked training run: params, per-epoch metrics, curves, model, status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medflow.layout import Layout
from medflow.ml.loop import EpochTracker, Result, RunConfig, TrainData, train
from medflow.ml.models import Classifier
from medflow.plots.training import learning_curve_figure
from medflow.runtime.liveness import ProcessIdentity
from medflow.runtime.progress import EpochProgress
from medflow.tracking.client import Tracker
from medflow.tracking.models import log_torch_model
from medflow.tracking.orphans import end_runs_of_dead_processes, owner_tags
from medflow.tracking.runs import mark_run_failed, tracked_run

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
    """Train inside an MLflow run that always ends FINISHED, FAILED or KILLED; with a
    ``checkpoint``, runs a killed earlier attempt left RUNNING are ended KILLED first."""
    if checkpoint is not None:
        me = ProcessIdentity.current()
        key = str(Path(checkpoint).resolve())
        end_runs_of_dead_processes(tracker, experiment, key, me)
        tags = {**tags, **owner_tags(key, me)}
    with tracked_run(tracker, experiment, run_name, tags, parent_run_id) as run_id:
        result = train_in_run(
            run,
            data,
            tracker,
            run_id,
            run_name=run_name,
            label=progress_label(run_name, tags),
            model=model,
            checkpoint=checkpoint,
            log_model=log_model,
            on_epoch=on_epoch,
        )
        if result.status == "diverged":
            mark_run_failed(tracker, run_id, f"diverged: {result.reason}")
    return result, run_id


def train_in_run(
    run: RunConfig,
    data: TrainData,
    tracker: Tracker,
    run_id: str,
    *,
    run_name: str,
    label: str,
    model: Classifier | None = None,
    checkpoint: Path | None = None,
    log_model: bool = True,
    log_curve: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Result:
    """Train and log into the open run ``run_id``: params, config, per-epoch and summary
    metrics, learning curve and (unless diverged) the model; ``label`` names the progress
    lines. The run's owner ends it and decides what divergence means (tracked_training:
    FAILED; a sweep trial: pruned). Sweep trials draw no curve: matplotlib's import and a
    figure per trial would cost more than a small trial's training.

    An exception from ``on_epoch`` (e.g. Optuna pruning the trial) stops training and closes
    the progress line with its message.
    """
    tracker.log_params(run_id, {**run.to_dict(), "dataset_hash": data.dataset_hash})
    tracker.log_dict(run_id, run.to_dict(), Layout.CONFIG_ARTIFACT)
    progress = EpochProgress(label, run.train.epochs)

    def stop_hook(epoch: int, metrics: dict[str, float]) -> None:
        try:
            on_epoch(epoch, metrics)  # type: ignore[misc]
        except Exception as exc:
            progress.finish(str(exc))
            raise

    result = train(
        run,
        data,
        EpochFanOut([MlflowEpochLogger(tracker, run_id), progress]),
        model=model,
        checkpoint=checkpoint,
        on_epoch=stop_hook if on_epoch is not None else None,
    )
    finish_progress(progress, result)
    tracker.set_tags(run_id, {"precision": result.precision})
    if result.best_epoch:
        tracker.log_metrics(run_id, summary_metrics(result), step=result.best_epoch)
    if log_curve and result.history:
        figure = learning_curve_figure(result, run_name)
        tracker.log_figure(run_id, figure, Layout.LEARNING_CURVE_ARTIFACT)
    if log_model and result.status != "diverged":
        log_torch_model(tracker, run_id, result.model, data.x_val[:2].numpy())
    return result
