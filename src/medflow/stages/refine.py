"""Refine the sweep's best configuration on the target: one run per mode and seed.

One job trains a batch of seeds of one mode in turn (``refine.seeds_per_job``): a process
pays ~8 s of imports and store set-up, more than a small run trains. A seed whose
result.json records the same inputs is reused, so an interrupted job resumes with the
seed it was training (from its checkpoint) rather than retraining the finished ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medflow.config.types import StudyConfig, TrackingConfig
from medflow.data.format import PreparedDataset
from medflow.layout import Layout, seed_label
from medflow.ml.loop import TrainData
from medflow.ml.optim import n_outputs_for
from medflow.ml.transfer import Mode, initial_model, save_model_file
from medflow.runtime.io import atomic_write_bytes, write_json_atomic
from medflow.stages.common import (
    MODEL_FILE,
    RESULT_FILE,
    RUN_ID_FILE,
    read_json,
    read_run_id,
    run_config,
)
from medflow.tracking.client import Tracker, config_hash, resolve_tracking_uri, standard_tags
from medflow.tracking.training import tracked_training

log = logging.getLogger(__name__)


def run_refine(
    study: StudyConfig,
    mode: Mode,
    seed: int,
    data: TrainData,
    best: dict[str, Any],
    pretrain_dir: Path | None,
    tracking: TrackingConfig,
    results: Path,
    out_dir: Path,
) -> dict:
    """Train, log to MLflow with lineage tags, and write model.pt + result.json + run_id.txt.

    ``best`` is the sweep's best_params.json; ``pretrain_dir`` is the folder of pretrained
    backbones, one sub-folder per activation.
    """
    params = best["params"]
    run = run_config(study, params, epochs=study.train["epochs"], seed=seed)
    backbone = None
    parent_model = None
    if mode != "scratch" and pretrain_dir is not None:
        backbone = pretrain_dir / run.model.activation
        parent_model = read_run_id(backbone)
    inputs_digest = config_hash(
        {
            "run": run.to_dict(),
            "mode": mode,
            "dataset_hash": data.dataset_hash,
            "backbone_run_id": parent_model,
            "sweep_best_run_id": best.get("mlflow_run_id"),
            "tracking_uri": resolve_tracking_uri(tracking.uri, results),
        }
    )
    # Decided before the backbone is loaded or the store opened: a reused seed needs neither.
    done = _finished_result(out_dir, inputs_digest)
    if done is not None:
        log.info(
            "refine %s %s seed %d: reusing run %s (same inputs)",
            study.name,
            mode,
            seed,
            done["run_id"],
        )
        return done
    model = initial_model(
        mode,
        run.model,
        data.input_shape,
        n_outputs_for(data.task, data.n_classes),
        backbone / MODEL_FILE if backbone else None,
        seed,
    )
    tracker = Tracker.for_results(results, tracking.uri)
    tags = standard_tags(
        "refine",
        study.name,
        data.dataset_hash,
        config_hash(run.to_dict()),
        mode=mode,
        seed=seed,
        parent_model_run_id=parent_model,
        sweep_best_trial=best.get("number"),
        sweep_best_run_id=best.get("mlflow_run_id"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    result, run_id = tracked_training(
        run,
        data,
        tracker,
        experiment=tracking.experiment(study.name),
        run_name=f"refine {mode} seed {seed}",
        tags=tags,
        model=model,
        checkpoint=out_dir / "checkpoint.pt",
    )
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
        "params": params,
        "inputs_digest": inputs_digest,
        "history": result.history,
    }
    if result.best_epoch:
        save_model_file(
            out_dir / MODEL_FILE, result.model, run.model, data.input_shape, run_id=run_id
        )
    else:
        (out_dir / MODEL_FILE).unlink(missing_ok=True)
    write_json_atomic(summary, out_dir / RESULT_FILE)
    atomic_write_bytes(out_dir / RUN_ID_FILE, run_id.encode())
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


def _finished_result(out_dir: Path, inputs_digest: str) -> dict[str, Any] | None:
    """The seed's earlier result if it was trained on the same inputs and is complete."""
    try:
        summary = read_json(out_dir / RESULT_FILE)
        run_id = read_run_id(out_dir)
    except (OSError, ValueError):
        return None
    complete = summary.get("run_id") == run_id and (
        (out_dir / MODEL_FILE).exists() or not summary.get("best_epoch")
    )
    return summary if complete and summary.get("inputs_digest") == inputs_digest else None


def run_refine_job(
    study: StudyConfig,
    mode: Mode,
    seeds: Sequence[int],
    tracking: TrackingConfig,
    layout: Layout,
) -> dict[str, Any]:
    """Refine ``seeds`` of one mode in turn; write the job's record (one line per seed)."""
    data = TrainData.from_prepared(PreparedDataset.open(layout.prepared(study.target)))
    best = read_json(layout.sweep(study.name) / "best_params.json")
    runs = []
    for seed in seeds:
        summary = run_refine(
            study,
            mode,
            seed,
            data,
            best,
            layout.pretrain_root(study.name) if study.pretrain else None,
            tracking,
            layout.results,
            layout.refine(study.name, mode, seed),
        )
        runs.append({k: summary[k] for k in ("seed", "run_id", "status", "monitor", "best_value")})
    record = {"study": study.name, "mode": mode, "runs": runs}
    write_json_atomic(record, layout.refine_batch(study.name, mode, seed_label(seeds)))
    return record
