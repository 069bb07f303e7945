"""Checks on the final splits that would otherwise surface as NaN metrics after training."""

from __future__ import annotations

import numpy as np

from medflow.data.base import SPLITS, Split
from medflow.errors import DataError


def check_splits(name: str, splits: dict[str, Split], task: str, class_names: list[str]) -> None:
    """Every split non-empty; for classification, each split holds at least two classes
    (a one-class validation or test split has no AUC, sensitivity or specificity)."""
    empty = [s for s in SPLITS if len(splits[s]) == 0]
    if empty:
        raise DataError(f"dataset '{name}': split(s) {', '.join(empty)} are empty")
    if task not in ("binary", "multiclass"):
        return
    for split in SPLITS:
        present = np.unique(splits[split].y)
        if len(present) < 2:
            only = class_names[int(present[0])]
            raise DataError(
                f"dataset '{name}': the {split} split holds only class '{only}' "
                f"({len(splits[split])} examples); its metrics would be undefined. Use "
                "split.stratify: true, larger split fractions, or a source with both classes "
                "in every split"
            )
