"""Classical baselines on the study's own split, scored on its test split with the project's
metrics: logistic regression for tabular targets; for sequence targets the time-series
literature's 1-nearest-neighbour with Euclidean distance and a logistic regression, both on
the raw (normalised) series."""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.data.format import PreparedDataset
from medflow.stats.metrics import compute_metrics

BASELINE_METRICS = ("accuracy", "balanced_accuracy", "auc")
LOGISTIC = "logistic regression (sklearn)"
NEAREST = "1-nearest-neighbour, Euclidean (sklearn)"
# Which estimators apply to which kind of prepared data.
BY_KIND = {"tabular": (LOGISTIC,), "sequence": (NEAREST, LOGISTIC)}


def classical_baselines(data: PreparedDataset) -> dict[str, Any]:
    """The baselines' test metrics, or ``{"applies": False, "note": why not}``."""
    meta = data.meta
    methods = BY_KIND.get(meta.get("kind"))
    if methods is None:
        return {
            "applies": False,
            "note": "Classical baselines are fitted for tabular and sequence data only.",
        }
    task = meta.get("task")
    if task not in ("binary", "multiclass"):
        return {"applies": False, "note": f"No classical baseline for a {task} task."}
    train, test = data.load("train"), data.load("test")
    x_train, x_test = _flat_features(data, train.x), _flat_features(data, test.x)
    y_train = train.y.astype(np.int64)
    found = []
    for method in methods:
        estimator, label = _estimator(method)
        model = estimator.fit(x_train, y_train)
        scores = _scores(task, int(meta["n_classes"]), model, model.predict_proba(x_test))
        metrics = compute_metrics(task, test.y.astype(np.int64), scores)
        found.append(
            {
                "method": method,
                "estimator": label,
                "metrics": {k: float(metrics[k]) for k in BASELINE_METRICS},
            }
        )
    return {
        "applies": True,
        "task": task,
        "n_train": len(train.y),
        "n_test": len(test.y),
        "baselines": found,
    }


def _estimator(method: str) -> tuple[Any, str]:
    # Imported here: only the analyze jobs that fit a baseline pay for scikit-learn.
    if method == NEAREST:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=1), "KNeighborsClassifier(n_neighbors=1)"
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=5000), "LogisticRegression(max_iter=5000)"


def _scores(task: str, n_classes: int, model: Any, proba: np.ndarray) -> np.ndarray:
    """``predict_proba`` as compute_metrics takes it (classes absent from train score 0)."""
    classes = model.classes_.astype(np.int64)
    if task == "binary":
        return proba[:, list(classes).index(1)] if 1 in classes else np.zeros(len(proba))
    scores = np.zeros((len(proba), n_classes))
    scores[:, classes] = proba
    return scores


def _flat_features(data: PreparedDataset, x: np.ndarray) -> np.ndarray:
    return data.normalise(x).reshape(len(x), -1)
