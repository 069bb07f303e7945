"""Classification and regression metrics from scores, shared by training and evaluation."""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from medflow.stats.scores import predictions

__all__ = ["compute_metrics", "predictions"]


def _auc(task: str, y: np.ndarray, scores: np.ndarray) -> float:
    """Macro AUC; per-label mean for multilabel as MedMNIST scores it; NaN if undefined."""
    try:
        if task == "binary":
            return float(roc_auc_score(y, scores))
        if task == "multiclass":
            return float(
                roc_auc_score(y, scores, multi_class="ovr", labels=np.arange(scores.shape[1]))
            )
        per_label = [
            roc_auc_score(y[:, j], scores[:, j])
            for j in range(y.shape[1])
            if len(np.unique(y[:, j])) == 2
        ]
        return float(np.mean(per_label)) if per_label else math.nan
    except ValueError:  # a class absent from y_true: AUC is undefined, not zero
        return math.nan


def compute_metrics(task: str, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """accuracy, balanced_accuracy, auc, f1 (macro) for classification; mse, r2 for regression."""
    if task == "regression":
        scores = scores.reshape(y.shape)
        return {"mse": float(mean_squared_error(y, scores)), "r2": float(r2_score(y, scores))}
    pred = predictions(task, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        if task == "multilabel":
            y = y.astype(np.int64)
            return {
                "accuracy": float((pred == y).mean()),  # per-label accuracy, as MedMNIST
                "balanced_accuracy": float(
                    np.mean(
                        [balanced_accuracy_score(y[:, j], pred[:, j]) for j in range(y.shape[1])]
                    )
                ),
                "auc": _auc(task, y, scores),
                "f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            }
        return {
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "auc": _auc(task, y, scores),
            "f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        }
