"""The evaluate stage: the only reader of the test split.

Scores every refine run on the validation split (to choose its operating point and, if
asked, its temperature: never on test) and on the test split: per-run bootstrap 95% CIs
logged as test_* metrics onto the refine runs; per mode, the mean over seeds with a
hierarchical-bootstrap interval (test examples and seeds), the rates at the operating
point, calibration, the paired transfer gain and DeLong tests between modes; the figures
of the model that was best on validation; metrics.json and model_card.md.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medflow.config.types import StudyConfig
from medflow.data.base import Split
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.layout import Layout
from medflow.ml.loop import evaluate_scores
from medflow.ml.monitor import MINIMISED
from medflow.ml.transfer import load_model_file
from medflow.plots.classification import confusion_figure, reliability_figure, roc_figure
from medflow.render.model_card import render_model_card
from medflow.runtime.digest import config_hash
from medflow.runtime.io import atomic_write_bytes, json_ready, write_json_atomic
from medflow.stages.common import read_json
from medflow.stages.context import StageContext
from medflow.stats.bootstrap import bootstrap_metrics
from medflow.stats.calibration import apply_temperature, fit_temperature
from medflow.stats.clinical import (
    COMPARISONS,
    ScoredRun,
    delong_comparison,
    intervals,
    split_per_class,
)
from medflow.stats.hierarchical import METHOD
from medflow.stats.operating_point import choose_thresholds, column_names, confusion
from medflow.stats.predictions import save_predictions
from medflow.stats.summary import per_class_metrics
from medflow.tracking.client import Tracker
from medflow.tracking.provenance import standard_tags
from medflow.tracking.runs import tracked_run

log = logging.getLogger(__name__)
CLASSIFICATION = ("binary", "multiclass", "multilabel")


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


def _choose(study: StudyConfig, task: str, val: Split, val_scores: np.ndarray) -> dict[str, Any]:
    """The run's operating point and temperature, both from the validation split."""
    if task not in CLASSIFICATION:
        return {"thresholds": None, "temperature": None}
    point = study.evaluate["operating_point"]
    thresholds = choose_thresholds(task, val.y, val_scores, point["rule"], point["target"])
    temperature = None
    if study.evaluate["calibration"] == "temperature":
        temperature = fit_temperature(task, val.y, val_scores)
    return {"thresholds": thresholds, "temperature": temperature}


def _score_runs(
    ctx: StageContext, study: StudyConfig, dataset: PreparedDataset, tracker: Tracker
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every finished refine run scored on validation and test: (runs, skipped)."""
    layout = ctx.layout
    test, val = dataset.load("test"), dataset.load("val")
    x_test = torch.from_numpy(dataset.normalise(test.x))
    x_val = torch.from_numpy(dataset.normalise(val.x))
    task, names = dataset.meta["task"], dataset.meta["class_names"]
    runs, skipped = [], []
    for mode in study.modes:
        for seed in study.seeds:
            model_file = layout.refine_model(study.name, mode, seed)
            result = _refine_result(layout, study, mode, seed)
            if result["status"] != "finished" or not model_file.exists():
                skipped.append({"mode": mode, "seed": seed, "reason": result.get("reason")})
                continue
            model, payload = load_model_file(model_file)
            scores = evaluate_scores(model, x_test, task, torch.device("cpu"))[1].numpy()
            val_scores = evaluate_scores(model, x_val, task, torch.device("cpu"))[1].numpy()
            chosen = _choose(study, task, val, val_scores)
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
            runs.append(
                {
                    "mode": mode,
                    "seed": seed,
                    "run_id": result["run_id"],
                    "val_value": result["best_value"],
                    "params": result.get("params"),
                    "model_config": payload.get("model_config"),
                    **chosen,
                    "confusion": confusion(task, test.y, scores, chosen["thresholds"])
                    if task in CLASSIFICATION
                    else None,
                    "test": boot,
                    "scores": scores,
                }
            )
    return runs, skipped


def _scored(task: str, runs: list[dict[str, Any]]) -> list[ScoredRun]:
    return [
        ScoredRun(
            r["mode"],
            r["seed"],
            r["scores"],
            r["thresholds"],
            apply_temperature(task, r["scores"], r["temperature"]) if r["temperature"] else None,
        )
        for r in runs
    ]


def _operating_point(
    study: StudyConfig, task: str, names: list[str], mode_runs: list[dict], per_class: dict
) -> dict[str, Any]:
    point = study.evaluate["operating_point"]
    thresholds = [r["thresholds"] for r in mode_runs if r["thresholds"] is not None]
    n_out = len(per_class)
    labels = column_names(task, names, n_out) if n_out else []
    best = _best_on_validation(mode_runs, study.train["monitor"])
    return {
        "rule": point["rule"] if task != "multiclass" else "argmax",
        "target": point["target"] if task != "multiclass" else None,
        "chosen_on": "validation",
        "positive_class": names[1] if task == "binary" else None,
        # the mean over seeds of each seed's threshold (per label for multilabel)
        "threshold": np.mean(thresholds, axis=0).tolist() if thresholds else None,
        "thresholds_by_seed": {str(r["seed"]): r["thresholds"] for r in mode_runs},
        "per_class": [{"class": labels[k], **rates} for k, rates in per_class.items()],
        # of the mode's run best on validation, at its own threshold (rows true, cols predicted)
        "confusion": best["confusion"],
        "confusion_seed": best["seed"],
    }


def _summarize(
    study: StudyConfig, task: str, names: list[str], y: np.ndarray, runs: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, comparisons): per mode and gain, hierarchical intervals; DeLong tests."""
    found = intervals(
        task, y, _scored(task, runs), study.bootstrap, seed=0, n_bins=study.evaluate["ece_bins"]
    )
    summary: dict[str, Any] = {}
    for mode in found.point:
        headline, per_class = split_per_class(found.mode(mode))
        mode_runs = [r for r in runs if r["mode"] == mode]
        summary[mode] = headline
        if task in CLASSIFICATION:
            summary[mode]["operating_point"] = _operating_point(
                study, task, names, mode_runs, per_class
            )
    comparisons: dict[str, Any] = {}
    for treated, baseline in COMPARISONS:
        if treated not in found.point or baseline not in found.point:
            continue
        gain, _ = split_per_class(found.gain(treated, baseline))
        if (treated, baseline) == COMPARISONS[0]:
            summary["transfer_gain"] = gain
        entry: dict[str, Any] = {"treated": treated, "baseline": baseline}
        if "auc" in gain:
            entry["auc_gain"] = gain["auc"]
        if task in CLASSIFICATION:
            by_seed = {
                m: {r["seed"]: r["scores"] for r in runs if r["mode"] == m}
                for m in (treated, baseline)
            }
            entry["delong"] = delong_comparison(task, y, by_seed[treated], by_seed[baseline])
        comparisons[f"{treated}_vs_{baseline}"] = entry
    return summary, comparisons


def _draw_figures(
    layout: Layout,
    study: StudyConfig,
    task: str,
    test: Split,
    best: dict[str, Any],
    names: list[str],
) -> list[Path]:
    """Confusion matrix (at the operating point), ROC curves and reliability diagram of the
    model best on validation."""
    scores = best["scores"]
    figures = {
        layout.evaluate_confusion(study.name): confusion_figure(
            task, test.y, scores, names, best["thresholds"]
        ),
        layout.evaluate_roc(study.name): roc_figure(task, test.y, scores, names),
        layout.evaluate_reliability(study.name): reliability_figure(
            task,
            test.y,
            scores,
            study.evaluate["ece_bins"],
            apply_temperature(task, scores, best["temperature"]) if best["temperature"] else None,
        ),
    }
    for path, figure in figures.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
    return list(figures)


def _mlflow_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """``<mode>.test_<metric>_{mean,ci_low,ci_high}`` and ``<comparison>.delong_p``."""
    out = {}
    for mode, metrics in doc["summary"].items():
        for metric, stats in metrics.items():
            if isinstance(stats, dict) and "mean" in stats:
                for key in ("mean", "ci_low", "ci_high"):
                    if stats.get(key) is not None and math.isfinite(stats[key]):
                        out[f"{mode}.test_{metric}_{key}"] = stats[key]
        threshold = (metrics.get("operating_point") or {}).get("threshold")
        if threshold and len(threshold) == 1:
            out[f"{mode}.threshold"] = threshold[0]
    for name, entry in doc["comparisons"].items():
        p = (entry.get("delong") or {}).get("p_value")
        if p is not None:
            out[f"{name}.delong_p"] = p
    return out


def _log_evaluation(
    ctx: StageContext, tracker: Tracker, study: StudyConfig, doc: dict, files: list[Path]
) -> None:
    """One evaluate run: per-mode figures with intervals, files and metrics.json; adds its id."""
    tags = standard_tags(
        "evaluate",
        study.name,
        doc["dataset_hash"],
        config_hash({"bootstrap": study.bootstrap, **study.evaluate}),
    )
    with tracked_run(tracker, ctx.experiment(study.name), "evaluate", tags) as run_id:
        tracker.log_params(run_id, {"evaluate": study.evaluate})
        tracker.log_metrics(run_id, _mlflow_metrics(doc), 0)
        for path in files:
            tracker.log_artifact(run_id, path)
        doc["mlflow_run_id"] = run_id
        tracker.log_dict(run_id, doc, ctx.layout.evaluate_metrics(study.name).name)


def run(ctx: StageContext, study: StudyConfig) -> dict:
    """Score the study's refine runs; write metrics.json, model_card.md, figures, predictions."""
    layout = ctx.layout
    dataset = PreparedDataset.open(layout.prepared(study.target))
    test = dataset.load("test")
    task, names = dataset.meta["task"], dataset.meta["class_names"]
    tracker = ctx.open_tracker()
    runs, skipped = _score_runs(ctx, study, dataset, tracker)
    if not runs:
        raise MedflowError(f"no refine run of study {study.name} finished: {skipped}")
    summary, comparisons = _summarize(study, task, names, test.y, runs)
    best = _best_on_validation(runs, study.train["monitor"])
    figures = _draw_figures(layout, study, task, test, best, names)
    hidden = ("scores", "params", "model_config")
    doc = json_ready(
        {
            "study": study.name,
            "target": study.target,
            "task": task,
            "dataset_hash": dataset.content_hash,
            "monitor": study.train["monitor"],
            "n_test": len(test.y),
            "interval_method": {"method": METHOD, "level": 0.95, "resamples": study.bootstrap},
            "calibration": {
                "method": study.evaluate["calibration"],
                "fitted_on": "validation",
                "ece_bins": study.evaluate["ece_bins"],
                "ece_binning": f"{study.evaluate['ece_bins']} equal-width bins on [0, 1]",
            },
            "summary": summary,
            "comparisons": comparisons,
            "runs": [{k: v for k, v in r.items() if k not in hidden} for r in runs],
            "skipped": skipped,
            "best_on_validation": {
                "mode": best["mode"],
                "seed": best["seed"],
                "run_id": best["run_id"],
                "params": best["params"],
                "model_config": best["model_config"],
                "per_class": per_class_metrics(task, test.y, best["scores"], names)
                if task in CLASSIFICATION
                else [],
            },
        }
    )
    card = layout.evaluate_model_card(study.name)
    atomic_write_bytes(card, render_model_card(study, dataset.meta, doc).encode("utf-8"))
    _log_evaluation(ctx, tracker, study, doc, [*figures, card])
    write_json_atomic(doc, layout.evaluate_metrics(study.name))
    _log_accuracy(study, summary)
    return doc


def _log_accuracy(study: StudyConfig, summary: dict[str, Any]) -> None:
    for mode, metrics in summary.items():
        if mode != "transfer_gain" and "accuracy" in metrics:
            acc = metrics["accuracy"]
            log.info(
                "%s %s: test accuracy %.3f (95%% CI %.3f-%.3f, hierarchical bootstrap, n=%d seeds)",
                study.name,
                mode,
                acc["mean"],
                acc["ci_low"],
                acc["ci_high"],
                acc["n"],
            )
