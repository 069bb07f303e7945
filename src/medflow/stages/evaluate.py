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

import torch

from medflow.config.types import StudyConfig
from medflow.data.base import Split
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.layout import Layout
from medflow.ml.loop import evaluate_scores
from medflow.ml.monitor import MINIMISED
from medflow.ml.transfer import load_model_file
from medflow.plots.classification import confusion_figure, roc_figure
from medflow.runtime.digest import config_hash
from medflow.runtime.io import write_json_atomic
from medflow.stages.common import read_json
from medflow.stages.context import StageContext
from medflow.stats.bootstrap import bootstrap_metrics
from medflow.stats.predictions import save_predictions
from medflow.stats.summary import per_class_metrics, summarize_modes
from medflow.tracking.client import Tracker
from medflow.tracking.provenance import standard_tags
from medflow.tracking.runs import tracked_run

log = logging.getLogger(__name__)


def _refine_result(layout: Layout, study: StudyConfig, mode: str, seed: int) -> dict[str, Any]:
    """A seed's result.json (a declared output of its refine job, so Snakemake re-runs that
    job when it is missing; this message is for a command run by hand)."""
    path = layout.refine_result(study.name, mode, seed)
    if not path.exists():
        raise MedflowError(f"{path} is missing: refine {mode} seed {seed} of '{study.name}' first")
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


def _score_runs(
    ctx: StageContext, study: StudyConfig, dataset: PreparedDataset, test: Split, tracker: Tracker
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[int, dict[str, float]]]]:
    """Every finished refine run scored on test: (runs, skipped, per-seed metric values)."""
    layout = ctx.layout
    x = torch.from_numpy(dataset.normalise(test.x))
    task, names = dataset.meta["task"], dataset.meta["class_names"]
    runs, skipped = [], []
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for mode in study.modes:
        for seed in study.seeds:
            model_file = layout.refine_model(study.name, mode, seed)
            result = _refine_result(layout, study, mode, seed)
            if result["status"] != "finished" or not model_file.exists():
                skipped.append({"mode": mode, "seed": seed, "reason": result.get("reason")})
                continue
            model, _ = load_model_file(model_file)
            _, scores = evaluate_scores(model, x, task, torch.device("cpu"))
            scores = scores.numpy()
            boot = bootstrap_metrics(task, test.y, scores, n_boot=study.bootstrap, seed=seed)
            tracker.log_metrics(result["run_id"], _test_metric_names(boot), step=0)
            tracker.flush(result["run_id"])
            save_predictions(
                layout.evaluate_prediction(study.name, mode, seed),
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
    return runs, skipped, per_seed


def _draw_figures(
    layout: Layout, study: StudyConfig, task: str, test: Split, scores: Any, names: list[str]
) -> list[Path]:
    """Confusion matrix and ROC curves of the model best on validation."""
    figures = {
        layout.evaluate_confusion(study.name): confusion_figure(task, test.y, scores, names),
        layout.evaluate_roc(study.name): roc_figure(task, test.y, scores, names),
    }
    for path, figure in figures.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
    return list(figures)


def _log_evaluation(
    ctx: StageContext, tracker: Tracker, study: StudyConfig, doc: dict, figures: list[Path]
) -> None:
    """One evaluate run: per-mode means, the figures and metrics.json; adds its run id."""
    tags = standard_tags(
        "evaluate", study.name, doc["dataset_hash"], config_hash({"bootstrap": study.bootstrap})
    )
    with tracked_run(tracker, ctx.experiment(study.name), "evaluate", tags) as run_id:
        for mode, metrics in doc["summary"].items():
            for metric, stats in metrics.items():
                if isinstance(stats, dict) and math.isfinite(stats.get("mean", math.nan)):
                    tracker.log_metrics(run_id, {f"{mode}.test_{metric}_mean": stats["mean"]}, 0)
        for path in figures:
            tracker.log_artifact(run_id, path)
        doc["mlflow_run_id"] = run_id
        tracker.log_dict(run_id, doc, ctx.layout.evaluate_metrics(study.name).name)


def run(ctx: StageContext, study: StudyConfig) -> dict:
    """Score the study's refine runs on test; write metrics.json, the figures, predictions."""
    dataset = PreparedDataset.open(ctx.layout.prepared(study.target))
    test = dataset.load("test")
    task, names = dataset.meta["task"], dataset.meta["class_names"]
    tracker = ctx.open_tracker()
    runs, skipped, per_seed = _score_runs(ctx, study, dataset, test, tracker)
    if not runs:
        raise MedflowError(f"no refine run of study {study.name} finished: {skipped}")
    summary = summarize_modes(per_seed)
    best = _best_on_validation(runs, study.train["monitor"])
    figures = _draw_figures(ctx.layout, study, task, test, best["scores"], names)
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
    _log_evaluation(ctx, tracker, study, doc, figures)
    write_json_atomic(doc, ctx.layout.evaluate_metrics(study.name))
    _log_accuracy(study, summary)
    return doc


def _log_accuracy(study: StudyConfig, summary: dict[str, Any]) -> None:
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
