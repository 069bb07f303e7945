"""A sweep worker: Optuna trials that fine-tune (or train) on the target, in MLflow.

medflow.hpo.worker runs the machinery (exact budget across worker processes, pruning,
retries, resume); this module supplies what a trial trains.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from medflow.config.types import StudyConfig, TrackingConfig
from medflow.data.format import PreparedDataset
from medflow.hpo.worker import run_worker, suggest
from medflow.layout import Layout
from medflow.ml.loop import TrainData, train
from medflow.ml.optim import n_outputs_for
from medflow.ml.transfer import initial_model
from medflow.runtime.progress import EpochProgress
from medflow.stages.common import MODEL_FILE, read_run_id, run_config
from medflow.stages.sweep import search_space, sweep_config, sweep_tags
from medflow.tracking.client import Tracker, flatten
from medflow.tracking.training import EpochFanOut, MlflowEpochLogger, finish_progress


def make_objective(
    study: StudyConfig, data: TrainData, tracker: Tracker, layout: Layout
) -> Callable[[optuna.Trial, str], float]:
    """One trial: sample params, start from the pretrained backbone, report every epoch."""
    space = search_space(study)
    cfg = study.sweep
    monitor = study.train["monitor"]
    n_outputs = n_outputs_for(data.task, data.n_classes)

    def objective(trial: optuna.Trial, run_id: str) -> float:
        params = suggest(trial, space)
        mode = params.get("freeze", "finetune") if study.pretrain else "scratch"
        run = run_config(study, params, epochs=cfg["epochs"], seed=cfg["seed"])
        backbone = layout.pretrain(study.name, run.model.activation) if study.pretrain else None
        model = initial_model(
            mode,
            run.model,
            data.input_shape,
            n_outputs,
            backbone / MODEL_FILE if backbone else None,
            run.train.seed,
        )
        tracker.log_params(run_id, {**flatten(run.to_dict()), "mode": mode})
        tracker.set_tags(
            run_id,
            {
                "mode": mode,
                "dataset_hash": data.dataset_hash,
                **({"parent_model_run_id": read_run_id(backbone)} if backbone else {}),
            },
        )

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics[monitor], epoch)
            trial.set_user_attr("epochs_run", epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        progress = EpochProgress(f"{study.name} trial {trial.number}", run.train.epochs)
        epoch_trackers = EpochFanOut([MlflowEpochLogger(tracker, run_id), progress])
        try:
            result = train(run, data, epoch_trackers, model=model, on_epoch=report)
        except optuna.TrialPruned as exc:
            progress.finish(str(exc))
            raise
        finish_progress(progress, result)
        if result.status == "diverged":
            # A diverged configuration is a bad one, not a broken trial: prune, do not retry.
            tracker.set_tags(run_id, {"diverged": result.reason or "yes"})
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        tracker.log_metrics(run_id, {f"best_{monitor}": result.best_value}, step=result.best_epoch)
        return result.best_value

    return objective


def run_study_worker(
    study: StudyConfig, tracking: TrackingConfig, layout: Layout, worker: str
) -> int:
    target = PreparedDataset.open(layout.prepared(study.target))
    data = TrainData.from_prepared(target)
    tracker = Tracker.for_results(layout.results, tracking.uri)
    objective = make_objective(study, data, tracker, layout)
    return run_worker(
        sweep_config(study),
        layout.sweep(study.name),
        study.name,
        objective,
        tracker,
        tracking.experiment(study.name),
        sweep_tags(study, target.content_hash, "trial"),
        worker=worker,
    )
