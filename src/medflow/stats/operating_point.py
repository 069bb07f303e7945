"""Operating points: a decision threshold chosen on the validation split (Youden's J, or a
target sensitivity or specificity), frozen, then applied to test; the rates at it.

Binary: one threshold on P(positive class = class 1). Multi-label: one threshold per label.
Multi-class: no threshold; one-vs-rest rates at the arg-max decision. Rates are computed
for every row of bootstrap counts at once (weighted sums), as medflow.stats.bootstrap does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix, roc_curve

from medflow.stats.scores import names_for

RULES = ("youden", "sensitivity", "specificity")
RATES = ("sensitivity", "specificity", "ppv", "npv")


def choose_threshold(
    truth: np.ndarray, score: np.ndarray, rule: str, target: float | None
) -> float:
    """The threshold (predict positive when score >= it) that ``rule`` picks on these data.

    youden: max sensitivity + specificity - 1; sensitivity: the highest threshold whose
    sensitivity reaches ``target`` (the best specificity that keeps it); specificity: the
    lowest threshold whose specificity reaches ``target``. 0.5 where one class is absent.
    """
    if rule not in RULES:
        raise ValueError(f"unknown operating-point rule {rule!r}; expected one of {RULES}")
    if len(np.unique(truth)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(truth, score, drop_intermediate=False)
    thresholds = np.minimum(thresholds, 1.0)  # the first one is +inf: predict no positive
    if rule == "youden":
        return float(thresholds[int(np.argmax(tpr - fpr))])
    if target is None:
        raise ValueError(f"operating-point rule {rule!r} needs a target")
    # roc_curve orders thresholds high -> low: tpr and fpr rise along it.
    if rule == "sensitivity":
        return float(thresholds[int(np.flatnonzero(tpr >= target)[0])])
    return float(thresholds[int(np.flatnonzero(1 - fpr >= target)[-1])])


def choose_thresholds(
    task: str, y_val: np.ndarray, s_val: np.ndarray, rule: str, target: float | None
) -> list[float] | None:
    """Binary: [threshold]; multi-label: one per label; multi-class: None (arg-max)."""
    if task == "binary":
        return [choose_threshold(y_val == 1, s_val, rule, target)]
    if task == "multilabel":
        return [
            choose_threshold(y_val[:, j] == 1, s_val[:, j], rule, target)
            for j in range(y_val.shape[1])
        ]
    return None


def decisions(task: str, scores: np.ndarray, thresholds: Sequence[float] | None) -> np.ndarray:
    """(N, K) positive decisions per class or label: the one-vs-rest problems rated."""
    if task == "binary":
        return (scores >= thresholds[0])[:, None]
    if task == "multilabel":
        return scores >= np.asarray(thresholds)[None, :]
    return scores.argmax(axis=1)[:, None] == np.arange(scores.shape[1])


def truth_columns(task: str, y: np.ndarray, n_out: int) -> np.ndarray:
    if task == "binary":
        return (y == 1)[:, None]
    if task == "multilabel":
        return y.astype(bool)
    return y[:, None] == np.arange(n_out)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def rates(truth: np.ndarray, positive: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """sensitivity, specificity, PPV, NPV, prevalence per column for each row of ``w`` (B, N):
    (B, K) arrays, NaN where a denominator is zero in a resample."""
    t, d = truth.astype(np.float64), positive.astype(np.float64)
    tp, fn = w @ (t * d), w @ (t * (1 - d))
    fp, tn = w @ ((1 - t) * d), w @ ((1 - t) * (1 - d))
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "prevalence": _ratio(tp + fn, tp + fn + fp + tn),
    }


def operating_metrics(
    task: str, y: np.ndarray, scores: np.ndarray, thresholds: Sequence[float] | None, w: np.ndarray
) -> dict[str, np.ndarray]:
    """Rates at the operating point for each resample: ``class/<k>/<rate>`` per class or label,
    plus the headline ``<rate>`` (binary: the positive class; multi-label: mean over labels)."""
    positive = decisions(task, scores, thresholds)
    truth = truth_columns(task, y, positive.shape[1])
    per_column = rates(truth, positive, w)
    out = {
        f"class/{k}/{name}": v[:, k] for name, v in per_column.items() for k in range(v.shape[1])
    }
    if task in ("binary", "multilabel"):
        for name in (*RATES, "prevalence"):
            values = per_column[name]
            finite = np.isfinite(values)
            out[name] = np.where(
                finite.any(axis=1),
                np.nansum(values, axis=1) / np.maximum(finite.sum(axis=1), 1),
                np.nan,
            )
    return out


def confusion(
    task: str, y: np.ndarray, scores: np.ndarray, thresholds: Sequence[float] | None
) -> list[list[list[int]]]:
    """Confusion matrices at the operating point (rows true, columns predicted): binary one
    2x2, multi-label one 2x2 per label, multi-class one KxK at the arg-max."""
    positive = decisions(task, scores, thresholds)
    if task == "binary":
        return [confusion_matrix(y, positive[:, 0].astype(int), labels=[0, 1]).tolist()]
    if task == "multilabel":
        return multilabel_confusion_matrix(y, positive.astype(int)).tolist()
    return [confusion_matrix(y, scores.argmax(axis=1), labels=np.arange(scores.shape[1])).tolist()]


def column_names(task: str, class_names: Sequence[str], n_out: int) -> list[str]:
    """The class (or label) each rated column stands for: binary rates class 1, the positive."""
    names = names_for(class_names, 2 if task == "binary" else n_out)
    return [names[1]] if task == "binary" else names
