"""Refine the sweep's best configuration on the target: one run per mode and seed.

One job trains a batch of seeds of one mode in turn (``refine.seeds_per_job``): a process
pays ~8 s of imports and store set-up, more than a small run trains. A seed whose resume
record (Layout.resume_file) holds the same inputs is reused, so an interrupted job resumes
with the seed it was training (from its checkpoint) rather than retraining the finished ones.
The record is not a declared output: Snakemake deletes result.json and run_id.txt before it
re-runs a job, and a reused seed writes them again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medflow.config.types import StudyConfig
from medflow.data.format import PreparedDataset
from medflow.layout import Layout, seed_label
from medflow.ml.loop import Result, RunConfig, TrainData
from medflow.ml.task import n_outputs_for
from medflow.ml.transfer import Mode, initial_model, save_model_file
from medflow.runtime.digest import config_hash
from medflow.runtime.io import atomic_write_bytes, write_json_atomic
from medflow.stages.common import read_json, read_run_id, run_config
from medflow.stages.context import StageContext
from medflow.tracking.client import Tracker
from medflow.tracking.provenance import standard_tags
from medflow.tracking.training import tracked_training

log = logging.getLogger(__name__)
RECORD_KEYS = ("seed", "run_id", "status", "monitor", "best_value")


@dataclass(frozen=True)
class _Job:
    """What every seed of one refine job shares: read once, before the first seed."""

    ctx: StageContext
    study: StudyConfig
    mode: Mode
    data: TrainData
    best: dict[str, Any]  # the sweep's best_params.json
    tracker: Callable[[], Tracker]  # opened by the first seed that trains

    def backbone(self, activation: str) -> Path | None:
        """The pretrained backbone's folder, for the modes that start from one."""
        if self.mode == "scratch" or self.study.pretrain is None:
            return None
        return self.ctx.layout.pretrain(self.study.name, activation)


def run(ctx: StageContext, study: StudyConfig, mode: Mode, seeds: Sequence[int]) -> dict:
    """Refine ``seeds`` of one mode in turn; write the job's record (one line per seed)."""
    layout = ctx.layout
    job = _Job(
        ctx=ctx,
        study=study,
        mode=mode,
        data=TrainData.from_prepared(PreparedDataset.open(layout.prepared(study.target))),
        best=read_json(layout.sweep_best(study.name)),
        tracker=functools.cache(ctx.open_tracker),
    )
    runs = []
    for seed in seeds:
        summary = _refine_seed(job, seed)
        runs.append({k: summary[k] for k in RECORD_KEYS})
    record = {"study": study.name, "mode": mode, "runs": runs}
    write_json_atomic(record, layout.refine_batch(study.name, mode, seed_label(seeds)))
    return record


def _refine_seed(job: _Job, seed: int) -> dict[str, Any]:
    """Train one seed (or reuse its finished run); write its model and records."""
    study, mode = job.study, job.mode
    run = run_config(study, job.best["params"], epochs=study.train["epochs"], seed=seed)
    backbone = job.backbone(run.model.activation)
    parent_model = read_run_id(backbone) if backbone else None
    inputs_digest = config_hash(
        {
            "run": run.to_dict(),
            "mode": mode,
            "dataset_hash": job.data.dataset_hash,
            "backbone_run_id": parent_model,
            "sweep_best_run_id": job.best.get("mlflow_run_id"),
            "tracking_uri": job.ctx.tracking_uri(),
        }
    )
    folder = job.ctx.layout.refine(study.name, mode, seed)
    # Decided before the backbone is loaded or the store opened: a reused seed needs neither.
    done = _finished_result(folder, inputs_digest)
    if done is not None:
        reused = done["run_id"]
        log.info(
            "refine %s %s seed %d: reusing run %s (same inputs)", study.name, mode, seed, reused
        )
        _write_records(folder, done)
        return done
    result, run_id = _train(job, seed, run, backbone, parent_model, folder)
    summary = {
        "run_id": run_id,
        "mode": mode,
        "seed": seed,
        "status": result.status,
        "reason": result.reason,
        "monitor": result.monitor,
        "best_value": result.best_value,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds,
        "precision": result.precision,
        "params": job.best["params"],
        "inputs_digest": inputs_digest,
        "history": result.history,
    }
    model_file = Layout.model_file(folder)
    if result.best_epoch:
        save_model_file(model_file, result.model, run.model, job.data.input_shape, run_id=run_id)
    else:
        model_file.unlink(missing_ok=True)
    _write_records(folder, summary)
    log.info(
        "refined %s %s seed %d: %s, %s %.4f at epoch %d",
        study.name,
        mode,
        seed,
        result.status,
        result.monitor,
        result.best_value,
        result.best_epoch,
    )
    return summary


def _train(
    job: _Job,
    seed: int,
    run: RunConfig,
    backbone: Path | None,
    parent_model: str | None,
    folder: Path,
) -> tuple[Result, str]:
    """One tracked training run of a seed, with the refine lineage tags."""
    data = job.data
    model = initial_model(
        job.mode,
        run.model,
        data.input_shape,
        n_outputs_for(data.task, data.n_classes),
        Layout.model_file(backbone) if backbone else None,
        seed,
    )
    tags = standard_tags(
        "refine",
        job.study.name,
        data.dataset_hash,
        config_hash(run.to_dict()),
        mode=job.mode,
        seed=seed,
        parent_model_run_id=parent_model,
        sweep_best_trial=job.best.get("number"),
        sweep_best_run_id=job.best.get("mlflow_run_id"),
    )
    folder.mkdir(parents=True, exist_ok=True)
    return tracked_training(
        run,
        data,
        job.tracker(),
        experiment=job.ctx.experiment(job.study.name),
        run_name=f"refine {job.mode} seed {seed}",
        tags=tags,
        model=model,
        checkpoint=Layout.checkpoint_file(folder),
    )


def _write_records(folder: Path, summary: dict[str, Any]) -> None:
    """result.json and run_id.txt (the declared outputs), then the resume record last: it
    marks the seed complete."""
    write_json_atomic(summary, Layout.result_file(folder))
    atomic_write_bytes(Layout.run_id_file(folder), summary["run_id"].encode())
    write_json_atomic(summary, Layout.resume_file(folder))


def _finished_result(folder: Path, inputs_digest: str) -> dict[str, Any] | None:
    """The seed's earlier summary if it was trained on the same inputs and is complete."""
    try:
        summary = read_json(Layout.resume_file(folder))
    except (OSError, ValueError):
        return None
    complete = Layout.model_file(folder).exists() or not summary.get("best_epoch")
    return summary if complete and summary.get("inputs_digest") == inputs_digest else None
