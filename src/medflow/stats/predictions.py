"""The per-example predictions table (CSV) the evaluate stage writes: index, truth, scores
and hard predictions, one row per test example."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from medflow.runtime.io import atomic_write_bytes
from medflow.stats.metrics import predictions
from medflow.stats.scores import check_scores, names_for


def _infer_task(y: np.ndarray, scores: np.ndarray) -> str:
    if y.ndim == 2 and y.shape[1] > 1:
        return "multilabel"
    if scores.ndim == 2 and scores.shape[1] > 1:
        return "multiclass"
    binary_y = np.isin(y, (0, 1)).all()
    return "binary" if binary_y and ((scores >= 0) & (scores <= 1)).all() else "regression"


def save_predictions(
    path: str | os.PathLike[str],
    y: ArrayLike,
    scores: ArrayLike,
    index: ArrayLike | None = None,
    *,
    task: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write one CSV row per example, atomically: index, y, score(s), pred.

    Columns: ``index``; ``y`` (or ``y_<label>`` for multilabel); ``score`` for 1-D scores
    (binary P(y=1), regression) or ``score_<k>`` per column; ``pred`` (or ``pred_<label>``).
    ``task`` is inferred from the shapes when not given (0/1 labels with scores in [0, 1]
    read as binary); ``label_names`` replace the column suffixes ``<k>``.
    """
    y_arr, s_arr = np.asarray(y), np.asarray(scores, dtype=np.float64)
    task = task or _infer_task(y_arr, s_arr)
    y_arr, s_arr = check_scores(task, y_arr, s_arr)
    idx = np.arange(len(y_arr)) if index is None else np.asarray(index).reshape(-1)
    if len(idx) != len(y_arr):
        raise ValueError(f"index has {len(idx)} entries for {len(y_arr)} examples")
    pred = predictions(task, s_arr)
    columns: dict[str, np.ndarray] = {"index": idx}
    if task == "multilabel" or (task == "regression" and y_arr.ndim == 2 and y_arr.shape[1] > 1):
        names = names_for(label_names, y_arr.shape[1])
        for key, values in (("y", y_arr), ("score", s_arr), ("pred", pred)):
            columns.update({f"{key}_{n}": values[:, j] for j, n in enumerate(names)})
    else:
        columns["y"] = y_arr.reshape(-1)
        if s_arr.ndim == 2 and s_arr.shape[1] > 1:
            names = names_for(label_names, s_arr.shape[1])
            columns.update({f"score_{n}": s_arr[:, k] for k, n in enumerate(names)})
        else:
            columns["score"] = s_arr.reshape(-1)
        columns["pred"] = pred.reshape(-1)
    buffer = io.StringIO()
    pd.DataFrame(columns).to_csv(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
