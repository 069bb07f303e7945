"""Pretrain one backbone per activation on the study's large source dataset."""

from __future__ import annotations

import logging

from medflow.config.types import PRETRAIN_LOOP_KEYS, StudyConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.layout import Layout
from medflow.ml.loop import RunConfig, TrainConfig, TrainData
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.ml.transfer import save_model_file
from medflow.runtime.digest import config_hash
from medflow.runtime.io import atomic_write_bytes, write_json_atomic
from medflow.stages.context import StageContext
from medflow.tracking.provenance import standard_tags
from medflow.tracking.training import tracked_training

log = logging.getLogger(__name__)


def pretrain_run_config(study: StudyConfig, activation: str) -> RunConfig:
    pre = study.pretrain
    if pre is None:
        raise MedflowError(f"study '{study.name}' has no pretrain section")
    loop = {k: study.train[k] for k in PRETRAIN_LOOP_KEYS}
    return RunConfig(
        model=ModelConfig.from_section({**study.model, "activation": activation}),
        # Pretraining's own settings; the rest (momentum, warm-up, loss) are schema defaults.
        optim=OptimConfig.from_schema(
            name=pre.optimizer, lr=pre.lr, weight_decay=pre.weight_decay, schedule="cosine"
        ),
        train=TrainConfig.from_schema(
            epochs=pre.epochs,
            batch_size=pre.batch_size,
            patience=pre.patience,
            monitor="val_accuracy",
            seed=pre.seed,
            **loop,
        ),
    )


def run(ctx: StageContext, study: StudyConfig, activation: str) -> str:
    """Train on the source, write model.pt, result.json and run_id.txt; returns the run id."""
    if study.pretrain is None:
        raise MedflowError(f"study '{study.name}' has no pretrain section")
    layout = ctx.layout
    data = TrainData.from_prepared(PreparedDataset.open(layout.prepared(study.pretrain.dataset)))
    run_cfg = pretrain_run_config(study, activation)
    tracker = ctx.open_tracker()
    tags = standard_tags(
        "pretrain",
        study.name,
        data.dataset_hash,
        config_hash(run_cfg.to_dict()),
        activation=activation,
        source_dataset=study.pretrain.dataset,
    )
    out_dir = layout.pretrain(study.name, activation)
    out_dir.mkdir(parents=True, exist_ok=True)
    result, run_id = tracked_training(
        run_cfg,
        data,
        tracker,
        experiment=ctx.experiment(study.name),
        run_name=f"pretrain {activation}",
        tags=tags,
        checkpoint=Layout.checkpoint_file(out_dir),
    )
    if result.status != "finished":
        raise MedflowError(
            f"pretraining {study.name}/{activation} {result.status}: {result.reason}"
        )
    save_model_file(
        layout.pretrain_model(study.name, activation),
        result.model,
        run_cfg.model,
        data.input_shape,
        run_id=run_id,
    )
    write_json_atomic(
        {"run_id": run_id, "best_epoch": result.best_epoch, **result.best_metrics},
        layout.pretrain_result(study.name, activation),
    )
    atomic_write_bytes(layout.pretrain_run_id(study.name, activation), run_id.encode())
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
