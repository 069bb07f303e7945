"""The prediction task: how many outputs a model has, its loss and its scores.

Losses take raw logits: the model never applies the output sigmoid/softmax itself,
:func:`predict_scores` does that for prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import get_args

import torch
import torch.nn.functional as F

from medflow.data.base import Task
from medflow.ml.names import check_known

__all__ = [
    "LOSSES",
    "TASKS",
    "LossFn",
    "build_loss",
    "loss_targets",
    "n_outputs_for",
    "predict_scores",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

TASKS: tuple[str, ...] = get_args(Task)
LOSSES: tuple[str, ...] = ("auto", "squared_error")


def _binary_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits (N, 1) or (N,) -> (N,); a binary model has exactly one output."""
    if logits.ndim > 2 or (logits.ndim == 2 and logits.shape[1] != 1):
        raise ValueError(f"binary task expects 1 output, got logits of shape {tuple(logits.shape)}")
    return logits.reshape(-1)


def _binary_pair(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and 0/1 targets of shape (N,) or (N, 1) -> two float (N,) tensors."""
    z = _binary_logits(logits)
    return z, targets.reshape(-1).to(z.dtype)


def _class_indices(targets: torch.Tensor) -> torch.Tensor:
    # MedMNIST stores class labels as (N, 1); accept that as well as (N,).
    return targets.reshape(-1).long()


def _bce_binary(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(*_binary_pair(logits, targets))


def _se_binary(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    z, y = _binary_pair(logits, targets)
    return F.mse_loss(torch.sigmoid(z), y)


def _ce_multiclass(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, _class_indices(targets))


def _se_multiclass(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Mean over samples and classes, like the multilabel case (Brier score / n_classes).
    one_hot = F.one_hot(_class_indices(targets), logits.shape[1]).to(logits.dtype)
    return F.mse_loss(torch.softmax(logits, dim=1), one_hot)


def _bce_multilabel(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def _se_multilabel(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.sigmoid(logits), targets.to(logits.dtype))


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Reshape rather than broadcast: (N, 1) vs (N,) would silently broadcast to (N, N).
    return F.mse_loss(outputs, targets.reshape(outputs.shape).to(outputs.dtype))


_LOSS_FNS: Mapping[tuple[str, str], LossFn] = MappingProxyType(
    {
        ("binary", "auto"): _bce_binary,
        ("binary", "squared_error"): _se_binary,
        ("multiclass", "auto"): _ce_multiclass,
        ("multiclass", "squared_error"): _se_multiclass,
        ("multilabel", "auto"): _bce_multilabel,
        ("multilabel", "squared_error"): _se_multilabel,
        ("regression", "auto"): _mse,
        ("regression", "squared_error"): _mse,
    }
)


def build_loss(task: str, loss: str = "auto") -> LossFn:
    """Loss ``fn(logits, targets) -> scalar`` for ``task``.

    ``auto``: binary -> BCE-with-logits on ``logits[:, 0]`` (0/1 targets (N,));
    multiclass -> cross-entropy (int64 targets (N,)); multilabel -> BCE-with-logits (float
    targets (N, L)); regression -> MSE. ``squared_error``: the mean squared error between
    sigmoid (binary/multilabel) or softmax (multiclass, vs one-hot) probabilities and the
    targets; MSE for regression.
    """
    check_known("task", task, TASKS)
    check_known("loss", loss, LOSSES)
    return _LOSS_FNS[(task, loss)]


def loss_targets(task: str, y: torch.Tensor) -> torch.Tensor:
    """Labels as the loss takes them: float for multilabel and regression, else as stored."""
    return y.float() if task in ("multilabel", "regression") else y


def n_outputs_for(task: str, n_classes: int) -> int:
    """Model outputs for ``task``: 1 for binary, else ``n_classes`` (labels, targets)."""
    check_known("task", task, TASKS)
    if n_classes < 1 or (task in ("binary", "multiclass") and n_classes < 2):
        raise ValueError(f"n_classes={n_classes} is too small for a {task} task")
    return 1 if task == "binary" else n_classes


def predict_scores(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> scores: P(y=1) of shape (N,) for binary, softmax rows for multiclass,
    per-label sigmoids for multilabel, the raw outputs for regression."""
    check_known("task", task, TASKS)
    if task == "binary":
        return torch.sigmoid(_binary_logits(logits))
    if task == "multiclass":
        return torch.softmax(logits, dim=1)
    if task == "multilabel":
        return torch.sigmoid(logits)
    return logits
