"""The sweep stage: ``init`` (the Optuna study and its MLflow parent run), ``worker`` (trials
that train through tracked training, as pretrain and refine do), ``best`` (best_params.json,
trials.csv and cells.json, logged to the parent run). The machinery is medflow.hpo.

Only ``worker`` imports torch (inside it): init and best are short jobs that would spend
seconds importing it, scikit-learn and matplotlib.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from medflow.config.types import StudyConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.hpo.space import optuna_study_name, search_space, suggest, sweep_config
from medflow.hpo.trials import summarize
from medflow.hpo.worker import init_sweep, run_worker
from medflow.layout import Layout
from medflow.runtime.digest import config_hash
from medflow.stages.context import StageContext
from medflow.tracking.provenance import standard_tags

if TYPE_CHECKING:
    import optuna

    from medflow.ml.loop import RunConfig, TrainData
    from medflow.ml.models import Classifier
    from medflow.tracking.client import Tracker

log = logging.getLogger(__name__)

TEST_DELAY_ENV = "MEDFLOW_TEST_TRIAL_DELAY_S"


def _tags(study: StudyConfig, dataset_hash: str, stage: str) -> dict[str, str]:
    return standard_tags(stage, study.name, dataset_hash, config_hash(study.sweep))


def init(ctx: StageContext, study: StudyConfig) -> str:
    """Create the study and its parent run (once); return the parent run id."""
    target = PreparedDataset.open(ctx.layout.prepared(study.target))
    return init_sweep(
        sweep_config(study),
        ctx.layout.sweep(study.name),
        optuna_study_name(study, target.content_hash),
        ctx.open_tracker(),
        ctx.experiment(study.name),
        _tags(study, target.content_hash, "sweep"),
    )


def worker(ctx: StageContext, study: StudyConfig, name: str) -> int:
    """Claim and run trials until the budget is spent; return how many this worker ran."""
    from medflow.ml.loop import TrainData  # torch: only the worker trains

    target = PreparedDataset.open(ctx.layout.prepared(study.target))
    data = TrainData.from_prepared(target)
    tracker = ctx.open_tracker()
    return run_worker(
        sweep_config(study),
        ctx.layout.sweep(study.name),
        optuna_study_name(study, target.content_hash),
        _objective(ctx, study, data, tracker),
        tracker,
        ctx.experiment(study.name),
        _tags(study, target.content_hash, "trial"),
        worker=name,
        space=search_space(study),
    )


def best(ctx: StageContext, study: StudyConfig) -> dict[str, Any]:
    """Write best_params.json and trials.csv; log both to the parent run, tag the best."""
    layout = ctx.layout
    folder = layout.sweep(study.name)
    target = PreparedDataset.open(layout.prepared(study.target))
    name = optuna_study_name(study, target.content_hash)
    summary = summarize(sweep_config(study), folder, name, folder, search_space(study))
    if "params" not in summary:
        raise MedflowError(f"{layout.sweep_best(study.name)} has no params")
    tracker = ctx.open_tracker()
    parent = layout.sweep_parent_run_id(study.name).read_text().strip()
    tracker.log_artifact(parent, str(layout.sweep_trials(study.name)))
    tracker.log_artifact(parent, str(layout.sweep_best(study.name)))
    tracker.log_artifact(parent, str(layout.sweep_cells(study.name)))
    tracker.set_tags(
        parent,
        {
            "best_trial": str(summary.get("number")),
            **{f"best_{k}": str(v) for k, v in summary["params"].items()},
        },
    )
    return summary


def _objective(
    ctx: StageContext, study: StudyConfig, data: TrainData, tracker: Tracker
) -> Callable[[optuna.Trial, str], float]:
    """One trial: sample params, start from the pretrained backbone, report every epoch;
    trained and logged by tracked training's ``train_in_run`` in the worker's child run."""
    import optuna

    from medflow.stages.common import run_config
    from medflow.tracking.training import train_in_run

    cfg, space, monitor = sweep_config(study), search_space(study), study.train["monitor"]
    pause = _test_delay()

    def objective(trial: optuna.Trial, run_id: str) -> float:
        params = suggest(trial, space)
        run = run_config(study, params, epochs=cfg.epochs, seed=cfg.seed)
        model = _initial_model(ctx, study, data, tracker, run_id, run, params)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics[monitor], epoch)
            trial.set_user_attr("epochs_run", epoch)
            pause()
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        result = train_in_run(
            run,
            data,
            tracker,
            run_id,
            run_name=f"trial {trial.number}",
            label=f"{study.name} trial {trial.number}",
            model=model,
            log_model=False,
            log_curve=False,
            on_epoch=report,
        )
        if result.status == "diverged":
            # A diverged configuration is a bad one, not a broken trial: prune, do not retry.
            tracker.set_tags(run_id, {"diverged": result.reason or "yes"})
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        return result.best_value

    return objective


def _test_delay() -> Callable[[], None]:
    """Test-only: ``MEDFLOW_TEST_TRIAL_DELAY_S=x`` sleeps a random half to all of ``x`` seconds
    after each epoch, so that tests can shuffle the workers' timing (and kill a worker
    mid-trial); unset (always, outside tests) it does nothing."""
    limit = float(os.environ.get(TEST_DELAY_ENV, "0") or 0)
    if limit <= 0:
        return lambda: None
    rng = random.SystemRandom()  # deliberately unseeded: the point is irregular timing
    return lambda: time.sleep(rng.uniform(limit / 2, limit))


def _initial_model(
    ctx: StageContext,
    study: StudyConfig,
    data: TrainData,
    tracker: Tracker,
    run_id: str,
    run: RunConfig,
    params: dict[str, Any],
) -> Classifier:
    """The trial's starting model (the sampled freeze mode of the backbone of its activation,
    or from scratch); records the mode and the backbone's run on the trial's run."""
    from medflow.ml.task import n_outputs_for
    from medflow.ml.transfer import initial_model
    from medflow.stages.common import read_run_id

    mode = params.get("freeze", "finetune") if study.pretrain else "scratch"
    backbone = ctx.layout.pretrain(study.name, run.model.activation) if study.pretrain else None
    model = initial_model(
        mode,
        run.model,
        data.input_shape,
        n_outputs_for(data.task, data.n_classes),
        Layout.model_file(backbone) if backbone else None,
        run.train.seed,
    )
    tracker.log_params(run_id, {"mode": mode})
    tracker.set_tags(
        run_id,
        {
            "mode": mode,
            "dataset_hash": data.dataset_hash,
            **({"parent_model_run_id": read_run_id(backbone)} if backbone else {}),
        },
    )
    return model
