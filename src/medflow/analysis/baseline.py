"""A classical baseline for tabular targets: scikit-learn logistic regression fitted on the
normalised train split and scored on the test split with the project's metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.data.format import PreparedDataset
from medflow.stats.metrics import compute_metrics

BASELINE_METRICS = ("accuracy", "balanced_accuracy", "auc")
METHOD = "logistic regression (sklearn)"


def logistic_baseline(data: PreparedDataset) -> dict[str, Any]:
    """The baseline's test metrics, or ``{"note": why not}`` where none applies."""
    meta = data.meta
    if meta.get("kind") != "tabular":
        return {"applies": False, "note": "A logistic-regression baseline is for tabular data."}
    task = meta.get("task")
    if task not in ("binary", "multiclass"):
        return {"applies": False, "note": f"No logistic-regression baseline for a {task} task."}
    from sklearn.linear_model import LogisticRegression  # the tabular case alone pays for it

    train, test = data.load("train"), data.load("test")
    model = LogisticRegression(max_iter=5000).fit(
        _flat_features(data, train.x), train.y.astype(np.int64)
    )
    proba = model.predict_proba(_flat_features(data, test.x))
    if task == "binary":
        scores = proba[:, list(model.classes_).index(1)] if 1 in model.classes_ else proba[:, -1]
    else:
        scores = np.zeros((len(test.y), int(meta["n_classes"])))
        scores[:, model.classes_.astype(np.int64)] = proba
    metrics = compute_metrics(task, test.y.astype(np.int64), scores)
    return {
        "applies": True,
        "method": METHOD,
        "estimator": "LogisticRegression(max_iter=5000)",
        "task": task,
        "n_train": len(train.y),
        "n_test": len(test.y),
        "metrics": {k: float(metrics[k]) for k in BASELINE_METRICS},
    }


def _flat_features(data: PreparedDataset, x: np.ndarray) -> np.ndarray:
    return data.normalise(x).reshape(len(x), -1)
