"""What every data source returns before splitting and writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Task = Literal["binary", "multiclass", "multilabel", "regression"]
Kind = Literal["image", "tabular", "sequence", "volume"]
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Examples of one split: x is (N, C, H, W) for images, (N, C, D, H, W) for volumes,
    (N, C, T) for sequences or (N, F) for tables."""

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
    # Fitted on the train split after splitting (imputation, one-hot categories) and applied
    # to every split, so val and test never shape the encoding; None: x is final as loaded.
    fit_transform: Callable[[dict[str, Split]], Fitted] | None = None
    sampling_rate: float | None = None  # Hz, for sequences whose source knows it

    @property
    def has_own_splits(self) -> bool:
        return set(self.splits) == set(SPLITS)


def pool(x: np.ndarray, y: np.ndarray) -> dict[str, Split]:
    """One unsplit pool, indexed by source position."""
    return {"all": Split(x, y, np.arange(len(y), dtype=np.int64))}


@dataclass
class Fitted:
    """What a source's fit_transform returns: every split encoded with what train taught."""

    splits: dict[str, Split]
    feature_names: list[str] | None
    notes: dict[str, object]  # added to the source's notes in meta.json


def fit_on_train(data: SourceData, splits: dict[str, Split]) -> tuple[SourceData, dict[str, Split]]:
    """Apply the source's fit_transform (if any) to the final splits; other sources pass."""
    if data.fit_transform is None:
        return data, splits
    fitted = data.fit_transform(splits)
    data = replace(
        data,
        feature_names=fitted.feature_names,
        notes={**data.notes, **fitted.notes},
        fit_transform=None,
    )
    return data, fitted.splits
