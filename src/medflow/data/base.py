"""What every data source returns before splitting and writing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Task = Literal["binary", "multiclass", "multilabel", "regression"]
Kind = Literal["image", "tabular"]
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Examples of one split: x is (N, C, H, W) for images or (N, F) for tables."""

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray  # position of each example in its source, for provenance and audits

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Split:
        return Split(self.x[rows], self.y[rows], self.index[rows])


@dataclass
class SourceData:
    """A loaded source: either its own train/val/test splits or one pool to split."""

    task: Task
    kind: Kind
    class_names: list[str]
    splits: dict[str, Split]  # keys: SPLITS, or just "all"
    feature_names: list[str] | None = None
    notes: dict[str, object] = field(default_factory=dict)  # recorded in meta.json

    @property
    def has_own_splits(self) -> bool:
        return set(self.splits) == set(SPLITS)


def pool(x: np.ndarray, y: np.ndarray) -> dict[str, Split]:
    """One unsplit pool, indexed by source position."""
    return {"all": Split(x, y, np.arange(len(y), dtype=np.int64))}
