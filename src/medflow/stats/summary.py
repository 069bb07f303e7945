"""The evaluate stage's tables: per-class metrics of one model, and each mode's metrics
over seeds with the transfer gain (treated - baseline, paired by seed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import precision_recall_fscore_support

from medflow.stats.intervals import aggregate_over_seeds, metric_bounds, paired_difference
from medflow.stats.metrics import predictions
from medflow.stats.scores import binary_auc, check_scores, n_outputs, names_for, one_vs_rest


def per_class_metrics(
    task: str, y: ArrayLike, scores: ArrayLike, class_names: Sequence[str] | None = None
) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1, support and one-vs-rest AUC (NaN if undefined) per class/label."""
    if task == "regression":
        raise ValueError("per-class metrics need a classification task")
    y_arr, s_arr = check_scores(task, y, scores)
    pred = predictions(task, s_arr)
    n_out = n_outputs(task, s_arr)
    labels = None if task == "multilabel" else np.arange(n_out)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_arr, pred, labels=labels, average=None, zero_division=0
    )
    truth, cols = one_vs_rest(task, y_arr, s_arr)
    return [
        {
            "class": name,
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "auc": binary_auc(truth[:, k], cols[:, k]),
        }
        for k, name in enumerate(names_for(class_names, n_out))
    ]


def summarize_modes(
    per_seed: Mapping[str, Mapping[int, Mapping[str, float]]],
    alpha: float = 0.05,
    treated: str = "finetune",
    baseline: str = "scratch",
) -> dict[str, dict[str, dict[str, float]]]:
    """mode -> metric -> aggregate_over_seeds, plus "transfer_gain" -> metric -> paired diff.

    The gain is ``treated - baseline`` paired over the seeds both modes ran, for metrics
    both report; it is present only when both modes share at least one seed.
    """
    if "transfer_gain" in per_seed:
        raise ValueError("'transfer_gain' is reserved and cannot be a mode name")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode, runs in per_seed.items():
        metric_names = sorted({m for metrics in runs.values() for m in metrics})
        out[mode] = {
            m: aggregate_over_seeds(
                [runs[s].get(m, math.nan) for s in sorted(runs)], alpha, metric_bounds(m)
            )
            for m in metric_names
        }
    if treated in per_seed and baseline in per_seed:
        treated_runs, baseline_runs = per_seed[treated], per_seed[baseline]
        seeds = sorted(set(treated_runs) & set(baseline_runs))
        shared = sorted(set(out[treated]) & set(out[baseline]))
        if seeds:
            out["transfer_gain"] = {
                m: paired_difference(
                    [treated_runs[s].get(m, math.nan) for s in seeds],
                    [baseline_runs[s].get(m, math.nan) for s in seeds],
                    alpha,
                    metric_bounds(m),
                )
                for m in shared
            }
    return out
