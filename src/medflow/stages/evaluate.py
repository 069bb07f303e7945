"""The evaluate stage: the only reader of the test split.

Scores every refine run on the test split with bootstrap 95% CIs, logs test_* metrics
onto those runs, aggregates per mode over seeds (mean and t-interval) with the
transfer gain, and draws the confusion matrix and ROC curves of the model that was
best on validation (never chosen on test).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from medflow.config.types import StudyConfig, TrackingConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.layout import Layout, seed_label
from medflow.ml.loop import evaluate_scores
from medflow.ml.monitor import MINIMISED
from medflow.ml.transfer import load_model_file
from medflow.runtime.io import write_json_atomic
from medflow.stages.common import MODEL_FILE, RESULT_FILE, read_json
from medflow.stats.evaluation import (
    bootstrap_metrics,
    confusion_figure,
    per_class_metrics,
    roc_figure,
    save_predictions,
    summarize_modes,
)
from medflow.tracking.client import Tracker, config_hash, standard_tags, tracked_run

log = logging.getLogger(__name__)


def _refine_result(layout: Layout, study: StudyConfig, mode: str, seed: int) -> dict[str, Any]:
    """A seed's result.json. Snakemake tracks only each refine job's record, so a seed folder
    removed by hand is not re-planned: say which record to delete to train it again."""
    path = layout.refine(study.name, mode, seed) / RESULT_FILE
    if not path.exists():
        (batch,) = [b for b in study.seed_batches if seed in b]
        record = layout.refine_batch(study.name, mode, seed_label(batch))
        raise MedflowError(f"{path} is missing: delete {record} and run again to refine it")
    return read_json(path)


def _best_on_validation(runs: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    sign = 1 if monitor in MINIMISED else -1
    return min(runs, key=lambda r: sign * r["val_value"])


def _test_metric_names(boot: dict[str, dict[str, float]]) -> dict[str, float]:
    metrics = {}
    for name, stats in boot.items():
        for key, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
            value = stats.get(key)
            if value is not None and math.isfinite(value):
                metrics[f"test_{name}{suffix}"] = value
    return metrics


def run_evaluate(study: StudyConfig, tracking: TrackingConfig, layout: Layout) -> dict:
    dataset = PreparedDataset.open(layout.prepared(study.target))
    test = dataset.load("test")
    x = torch.from_numpy(dataset.normalise(test.x))
    task, names = dataset.meta["task"], dataset.meta["class_names"]
    out: Path = layout.evaluate(study.name)
    tracker = Tracker.for_results(layout.results, tracking.uri)
    runs, skipped = [], []
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for mode in study.modes:
        for seed in study.seeds:
            folder = layout.refine(study.name, mode, seed)
            result = _refine_result(layout, study, mode, seed)
            if result["status"] != "finished" or not (folder / MODEL_FILE).exists():
                skipped.append({"mode": mode, "seed": seed, "reason": result.get("reason")})
                continue
            model, _ = load_model_file(folder / MODEL_FILE)
            _, scores = evaluate_scores(model, x, task, torch.device("cpu"))
            scores = scores.numpy()
            boot = bootstrap_metrics(task, test.y, scores, n_boot=study.bootstrap, seed=seed)
            tracker.log_metrics(result["run_id"], _test_metric_names(boot), step=0)
            tracker.flush(result["run_id"])
            save_predictions(
                out / "predictions" / f"{mode}_seed{seed}.csv",
                test.y,
                scores,
                test.index,
                task=task,
                label_names=names if task == "multilabel" else None,
            )
            per_seed.setdefault(mode, {})[seed] = {k: v["value"] for k, v in boot.items()}
            runs.append(
                {
                    "mode": mode,
                    "seed": seed,
                    "run_id": result["run_id"],
                    "val_value": result["best_value"],
                    "test": boot,
                    "scores": scores,
                }
            )
    if not runs:
        raise MedflowError(f"no refine run of study {study.name} finished: {skipped}")
    summary = summarize_modes(per_seed)
    best = _best_on_validation(runs, study.train["monitor"])
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "confusion.png": confusion_figure(task, test.y, best["scores"], names),
        "roc.png": roc_figure(task, test.y, best["scores"], names),
    }
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
    doc = {
        "study": study.name,
        "target": study.target,
        "task": task,
        "dataset_hash": dataset.content_hash,
        "monitor": study.train["monitor"],
        "n_test": len(test.y),
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "scores"} for r in runs],
        "skipped": skipped,
        "best_on_validation": {
            "mode": best["mode"],
            "seed": best["seed"],
            "run_id": best["run_id"],
            "per_class": per_class_metrics(task, test.y, best["scores"], names),
        },
    }
    tags = standard_tags(
        "evaluate", study.name, dataset.content_hash, config_hash({"bootstrap": study.bootstrap})
    )
    with tracked_run(tracker, tracking.experiment(study.name), "evaluate", tags) as run_id:
        for mode, metrics in summary.items():
            for metric, stats in metrics.items():
                if isinstance(stats, dict) and math.isfinite(stats.get("mean", math.nan)):
                    tracker.log_metrics(run_id, {f"{mode}.test_{metric}_mean": stats["mean"]}, 0)
        for name in figures:
            tracker.log_artifact(run_id, out / name)
        doc["mlflow_run_id"] = run_id
        tracker.log_dict(run_id, doc, "metrics.json")
    write_json_atomic(doc, out / "metrics.json")
    for mode, metrics in summary.items():
        if mode != "transfer_gain" and "accuracy" in metrics:
            acc = metrics["accuracy"]
            log.info(
                "%s %s: test accuracy %.3f (95%% CI %.3f-%.3f, n=%d seeds)",
                study.name,
                mode,
                acc["mean"],
                acc["ci_low"],
                acc["ci_high"],
                acc["n"],
            )
    return doc
