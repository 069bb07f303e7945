"""Pretrain one backbone per activation on the study's large source dataset."""

from __future__ import annotations

import logging
from pathlib import Path

from medflow.config.types import StudyConfig, TrackingConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.ml.loop import RunConfig, TrainConfig, TrainData
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.ml.transfer import save_model_file
from medflow.runtime.io import atomic_write_bytes, write_json_atomic
from medflow.stages.common import MODEL_FILE, RESULT_FILE, RUN_ID_FILE
from medflow.tracking.client import Tracker, config_hash, standard_tags
from medflow.tracking.training import tracked_training

log = logging.getLogger(__name__)


def pretrain_run_config(study: StudyConfig, activation: str) -> RunConfig:
    pre = study.pretrain
    if pre is None:
        raise MedflowError(f"study '{study.name}' has no pretrain section")
    loop = {k: study.train[k] for k in ("device", "resident_max_mb", "amp", "augment")}
    return RunConfig(
        model=ModelConfig.from_dict({**study.model, "activation": activation}),
        optim=OptimConfig(
            name=pre.optimizer, lr=pre.lr, weight_decay=pre.weight_decay, schedule="cosine"
        ),
        train=TrainConfig(
            epochs=pre.epochs,
            batch_size=pre.batch_size,
            patience=pre.patience,
            monitor="val_accuracy",
            seed=pre.seed,
            **loop,
        ),
    )


def run_pretrain(
    study: StudyConfig,
    activation: str,
    source: Path,
    tracking: TrackingConfig,
    results: Path,
    out_dir: Path,
) -> str:
    """Train on the source, write model.pt, result.json and run_id.txt; returns the run id."""
    data = TrainData.from_prepared(PreparedDataset.open(source))
    run = pretrain_run_config(study, activation)
    tracker = Tracker.for_results(results, tracking.uri)
    tags = standard_tags(
        "pretrain",
        study.name,
        data.dataset_hash,
        config_hash(run.to_dict()),
        activation=activation,
        source_dataset=study.pretrain.dataset,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    result, run_id = tracked_training(
        run,
        data,
        tracker,
        experiment=tracking.experiment(study.name),
        run_name=f"pretrain {activation}",
        tags=tags,
        checkpoint=out_dir / "checkpoint.pt",
    )
    if result.status != "finished":
        raise MedflowError(
            f"pretraining {study.name}/{activation} {result.status}: {result.reason}"
        )
    save_model_file(out_dir / MODEL_FILE, result.model, run.model, data.input_shape, run_id=run_id)
    write_json_atomic(
        {"run_id": run_id, "best_epoch": result.best_epoch, **result.best_metrics},
        out_dir / RESULT_FILE,
    )
    atomic_write_bytes(out_dir / RUN_ID_FILE, run_id.encode())
    log.info(
        "pretrained %s/%s: %s %.4f at epoch %d (run %s)",
        study.name,
        activation,
        result.monitor,
        result.best_value,
        result.best_epoch,
        run_id,
    )
    return run_id
