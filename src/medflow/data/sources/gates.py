"""The lecture's logic-gate truth tables (seed 002: OR, AND, XOR)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.data.base import SPLITS, SourceData, Split

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
TRUTH_TABLES = {"OR": (0, 1, 1, 1), "AND": (0, 0, 0, 1), "XOR": (0, 1, 1, 0)}


def load(options: dict[str, Any], seed: int) -> SourceData:
    y = np.array(TRUTH_TABLES[options["gate"]], dtype=np.int64)
    table = Split(INPUTS.copy(), y, np.arange(4, dtype=np.int64))
    # The four rows are the whole population: the lecture trains and scores on them.
    return SourceData(
        task="binary",
        kind="tabular",
        class_names=["0", "1"],
        splits={name: table for name in SPLITS},
        feature_names=["x1", "x2"],
        notes={"gate": options["gate"]},
    )
