"""Seeded, stratified train/val/test splits and per-class subsampling."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from medflow.config.types import DatasetConfig
from medflow.data.base import SourceData, Split
from medflow.errors import DataError


def _stratify_labels(data: SourceData, stratify: bool, y: np.ndarray) -> np.ndarray | None:
    return y if stratify and data.task in ("binary", "multiclass") else None


def split_pool(data: SourceData, cfg: DatasetConfig) -> dict[str, Split]:
    """Split the source's single pool into train/val/test (seeded, stratified)."""
    everything = data.splits["all"]
    rows = np.arange(len(everything))
    val_f, test_f = cfg.split.val_fraction, cfg.split.test_fraction
    if val_f + test_f >= 1:
        raise DataError(
            f"dataset '{cfg.name}': split.val_fraction + split.test_fraction = "
            f"{val_f + test_f:g} leaves no training data; it must be < 1"
        )
    labels = _stratify_labels(data, cfg.split.stratify, everything.y)
    try:
        rest, test = train_test_split(
            rows, test_size=test_f, random_state=cfg.seed, stratify=labels
        )
        rest_labels = None if labels is None else labels[rest]
        train, val = train_test_split(
            rest, test_size=val_f / (1 - test_f), random_state=cfg.seed, stratify=rest_labels
        )
    except ValueError as exc:
        raise DataError(
            f"dataset '{cfg.name}': cannot split {len(rows)} examples "
            f"(val {val_f:g}, test {test_f:g}): {exc}"
        ) from None
    return {
        name: everything.take(np.sort(r))
        for name, r in (("train", train), ("val", val), ("test", test))
    }


def subsample_per_class(
    train: Split, per_class: int, seed: int, data: SourceData, name: str
) -> Split:
    """Keep ``per_class`` seeded-random training examples of each class."""
    if data.task not in ("binary", "multiclass"):
        raise DataError(
            f"dataset '{name}': train_per_class needs a binary or multiclass task, not {data.task}"
        )
    rng = np.random.default_rng([seed, per_class])
    keep = []
    for label in np.unique(train.y):
        members = np.flatnonzero(train.y == label)
        if len(members) < per_class:
            class_name = data.class_names[int(label)]
            raise DataError(
                f"dataset '{name}': train_per_class={per_class} but class '{class_name}' "
                f"has only {len(members)} training examples"
            )
        keep.append(rng.choice(members, size=per_class, replace=False))
    return train.take(np.sort(np.concatenate(keep)))
