"""Labels and scores as the evaluation maths and figures take them: checked shapes, class
names, and the one-vs-rest columns per class or label."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import get_args

import numpy as np
from numpy.typing import ArrayLike

from medflow.data.base import Task

TASKS: tuple[str, ...] = get_args(Task)


def predictions(task: str, scores: np.ndarray) -> np.ndarray:
    """Hard predictions: threshold 0.5 (binary, multilabel) or argmax (multiclass)."""
    if task == "binary" or task == "multilabel":
        return (scores >= 0.5).astype(np.int64)
    if task == "multiclass":
        return scores.argmax(axis=1)
    return scores


def check_scores(task: str, y: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Coerce to the shapes compute_metrics expects and fail early on mismatches."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    y_arr, s_arr = np.asarray(y), np.asarray(scores, dtype=np.float64)
    if len(y_arr) == 0 or len(y_arr) != len(s_arr):
        raise ValueError(f"need as many scores as labels (>0); got {len(y_arr)} and {len(s_arr)}")
    if task == "regression":
        return y_arr.astype(np.float64), s_arr.reshape(y_arr.shape)
    if task == "multilabel":
        if y_arr.ndim != 2 or s_arr.shape != y_arr.shape:
            raise ValueError(
                f"multilabel needs y and scores (N, L); got {y_arr.shape}, {s_arr.shape}"
            )
        return y_arr.astype(np.int64), s_arr
    y_arr = y_arr.reshape(-1).astype(np.int64)
    if task == "binary":
        s_arr = s_arr.reshape(-1)
        if len(s_arr) != len(y_arr):
            raise ValueError("binary scores must be P(y=1), one per example")
        n_classes = 2
    else:
        if s_arr.ndim != 2:
            raise ValueError(f"multiclass scores must be (N, K); got {s_arr.shape}")
        n_classes = s_arr.shape[1]
    if y_arr.min() < 0 or y_arr.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}); got {y_arr.min()}..{y_arr.max()}")
    return y_arr, s_arr


def n_outputs(task: str, scores: np.ndarray) -> int:
    """Classes (binary: 2) or labels that ``scores`` cover."""
    return 2 if task == "binary" else scores.shape[1]


def names_for(names: Sequence[str] | None, count: int) -> list[str]:
    """``names`` as strings, checked against ``count``; "0".."count-1" when not given."""
    if names is None:
        return [str(k) for k in range(count)]
    if len(names) != count:
        raise ValueError(f"expected {count} class names, got {len(names)}")
    return [str(n) for n in names]


def one_vs_rest(task: str, y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth, score) columns per class or label: the binary problems ROC curves are drawn for."""
    if task == "multilabel":
        return y.astype(bool), scores
    if task == "binary":
        return np.column_stack([y == 0, y == 1]), np.column_stack([1 - scores, scores])
    return y[:, None] == np.arange(scores.shape[1]), scores


def binary_auc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score  # not at import: training jobs do without it

    """ROC AUC of one binary problem; NaN if ``truth`` holds a single class."""
    return float(roc_auc_score(truth, score)) if len(np.unique(truth)) == 2 else math.nan
