"""Class labels must be integral class ids: a float 0.7 or 1.9 is refused, never truncated."""

from __future__ import annotations

import numpy as np

from medflow.errors import DataError


def class_ids(labels: np.ndarray, where: str, n_classes: int) -> np.ndarray:
    """``labels`` as int64 ids in 0..n_classes-1; ``where`` names the file in errors."""
    values = np.asarray(labels)
    if values.dtype == np.bool_:
        values = values.astype(np.int64)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise DataError(f"{where}: labels of dtype {values.dtype} are not class ids")
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            first = float(values.reshape(-1)[int(np.flatnonzero(bad.reshape(-1))[0])])
            raise DataError(
                f"{where}: {int(bad.sum())} label(s) are not whole class ids (e.g. {first:g}); "
                "labels must be integers"
            )
    ids = values.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_classes):
        raise DataError(f"{where}: labels outside 0..{n_classes - 1}")
    return ids
