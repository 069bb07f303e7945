"""Class imbalance: loss weights (``train.class_weight``) and per-example sampling weights
(``train.sampler``), both from the training split's label counts only.

``balanced`` weights are scikit-learn's ``compute_class_weight("balanced")``:
``n_samples / (n_classes * count_c)``. Binary and multi-label losses take them as
``pos_weight = w_1 / w_0`` (= negatives / positives, per label for multi-label). A class
absent from the train split gets weight 1 (and the others are balanced among themselves).

The balanced sampler draws each example with probability inverse to its class's frequency,
so that every class is drawn about equally often. A multi-label example counts as its
rarest positive label (by train prevalence), an example with no positive label as one more
group "no label"; so rare labels are drawn more often, although their co-occurring labels
come along.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from medflow.errors import ConfigError

__all__ = ["CLASS_WEIGHTS", "SAMPLERS", "loss_weights", "sample_weights"]

log = logging.getLogger(__name__)

CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")
SAMPLERS: tuple[str, ...] = ("uniform", "balanced")


def _check(key: str, mode: str, known: tuple[str, ...]) -> None:
    if mode not in known:
        raise ConfigError(f"train.{key}: {mode!r} is not one of {', '.join(known)}")


def _needs_labels(key: str, task: str, off: str) -> None:
    if task == "regression":
        raise ConfigError(
            f"train.{key}: balanced needs class labels; a regression target has none (use {off})"
        )


def _balanced(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Balanced weight per class of ``classes`` (1.0 for a class absent from ``labels``)."""
    # imported here: only balanced weighting needs it, not every training job's start
    from sklearn.utils.class_weight import compute_class_weight

    present = np.isin(classes, labels)
    weights = np.ones(len(classes))
    if present.any():
        weights[present] = compute_class_weight("balanced", classes=classes[present], y=labels)
    return weights


def _pos_weight(labels: np.ndarray) -> float:
    """``w_1 / w_0`` of 0/1 labels, i.e. negatives / positives; 1.0 if either is absent."""
    w = _balanced(labels.astype(np.int64), np.array([0, 1]))
    return float(w[1] / w[0])


def loss_weights(task: str, y: torch.Tensor, n_classes: int, mode: str) -> torch.Tensor | None:
    """The loss's class weights for ``train.class_weight`` = ``mode`` from train labels ``y``:
    None for ``none``; (1,) pos_weight for binary, (n_classes,) weight for multi-class,
    (n_labels,) pos_weight for multi-label."""
    _check("class_weight", mode, CLASS_WEIGHTS)
    if mode == "none":
        return None
    _needs_labels("class_weight", task, "none")
    labels = y.numpy()
    if task == "binary":
        weights = [_pos_weight(labels.reshape(-1))]
    elif task == "multiclass":
        weights = _balanced(labels.reshape(-1).astype(np.int64), np.arange(n_classes)).tolist()
    else:
        weights = [_pos_weight(labels[:, j]) for j in range(labels.shape[1])]
    log.info("train.class_weight balanced: %s", [round(w, 4) for w in weights])
    return torch.tensor(weights, dtype=torch.float32)


def _groups(task: str, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Each example's sampling group and the number of groups: the class, or for multi-label
    the rarest positive label (the last group: no positive label)."""
    if task != "multilabel":
        groups = labels.reshape(-1).astype(np.int64)
        return groups, int(groups.max()) + 1
    positive = labels.astype(bool)
    n_labels = positive.shape[1]
    counts = positive.sum(axis=0)
    # Labels never positive in train never decide a group; rank the others by count.
    rank = np.where(positive, counts[None, :], np.iinfo(np.int64).max)
    groups = np.where(positive.any(axis=1), rank.argmin(axis=1), n_labels)
    return groups, n_labels + 1


def sample_weights(task: str, y: torch.Tensor, mode: str) -> torch.Tensor | None:
    """Per-example drawing weights (float64, (N,)) for ``train.sampler`` = ``mode``, or None for
    ``uniform``; proportional to the inverse frequency of each example's group."""
    _check("sampler", mode, SAMPLERS)
    if mode == "uniform":
        return None
    _needs_labels("sampler", task, "uniform")
    groups, n_groups = _groups(task, y.numpy())
    per_group = _balanced(groups, np.arange(n_groups))
    return torch.from_numpy(per_group[groups]).to(torch.float64)
