"""Real datasets that scikit-learn ships on disk (no download)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

from medflow.data.base import SourceData, pool


def load_breast_cancer_source(options: dict[str, Any], seed: int) -> SourceData:
    """Wisconsin diagnostic breast cancer: 569 patients x 30 features, binary.

    Recoded so that malignant is class 1, the positive class whose sensitivity and PPV the
    evaluation reports (scikit-learn codes malignant 0 and benign 1)."""
    bunch = load_breast_cancer()
    names = [str(n) for n in bunch.target_names]
    assert names == ["malignant", "benign"], names  # what the recoding below relies on
    return SourceData(
        task="binary",
        kind="tabular",
        class_names=["benign", "malignant"],
        splits=pool(bunch.data.astype(np.float32), 1 - bunch.target.astype(np.int64)),
        feature_names=[str(n) for n in bunch.feature_names],
    )


def load_digits_source(options: dict[str, Any], seed: int) -> SourceData:
    """UCI handwritten digits: 1,797 grayscale 8x8 images, values 0-16, 10 classes."""
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None, :, :]
    return SourceData(
        task="multiclass",
        kind="image",
        class_names=[str(n) for n in bunch.target_names],
        splits=pool(images, bunch.target.astype(np.int64)),
    )
