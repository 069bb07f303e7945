"""The prediction task: how many outputs a model has, its loss and its scores.

Losses take raw logits: the model never applies the output sigmoid/softmax itself,
:func:`predict_scores` does that for prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import get_args

import torch
import torch.nn.functional as F

from medflow.data.base import Task
from medflow.errors import ConfigError
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


def _on(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    # Validation scores on the CPU what training scores on the device: follow the logits.
    return None if weight is None else weight.to(like.device)


def _bce_binary(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    z, y = _binary_pair(logits, targets)
    return F.binary_cross_entropy_with_logits(z, y, pos_weight=_on(weight, z))


def _se_binary(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    z, y = _binary_pair(logits, targets)
    return F.mse_loss(torch.sigmoid(z), y)


def _ce_multiclass(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    # With weights, the mean is over the targets' weights (sum w_y * loss / sum w_y).
    return F.cross_entropy(logits, _class_indices(targets), weight=_on(weight, logits))


def _se_multiclass(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Mean over samples and classes, like the multilabel case (Brier score / n_classes).
    one_hot = F.one_hot(_class_indices(targets), logits.shape[1]).to(logits.dtype)
    return F.mse_loss(torch.softmax(logits, dim=1), one_hot)


def _bce_multilabel(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), pos_weight=_on(weight, logits)
    )


def _se_multilabel(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.sigmoid(logits), targets.to(logits.dtype))


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Reshape rather than broadcast: (N, 1) vs (N,) would silently broadcast to (N, N).
    return F.mse_loss(outputs, targets.reshape(outputs.shape).to(outputs.dtype))


# The losses that take class weights (``train.class_weight``), as pos_weight or weight.
_WEIGHTED: Mapping[str, Callable[..., torch.Tensor]] = MappingProxyType(
    {"binary": _bce_binary, "multiclass": _ce_multiclass, "multilabel": _bce_multilabel}
)

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


def build_loss(task: str, loss: str = "auto", weight: torch.Tensor | None = None) -> LossFn:
    """Loss ``fn(logits, targets) -> scalar`` for ``task``.

    ``auto``: binary -> BCE-with-logits on ``logits[:, 0]`` (0/1 targets (N,));
    multiclass -> cross-entropy (int64 targets (N,)); multilabel -> BCE-with-logits (float
    targets (N, L)); regression -> MSE. ``squared_error``: the mean squared error between
    sigmoid (binary/multilabel) or softmax (multiclass, vs one-hot) probabilities and the
    targets; MSE for regression.

    ``weight`` (:func:`medflow.ml.imbalance.loss_weights`): class weights of the ``auto``
    loss, BCE's ``pos_weight`` (binary, multilabel) or cross-entropy's ``weight``.
    """
    check_known("task", task, TASKS)
    check_known("loss", loss, LOSSES)
    if weight is None:
        return _LOSS_FNS[(task, loss)]
    if loss != "auto" or task not in _WEIGHTED:
        raise ConfigError(
            f"train.class_weight: balanced weights the auto loss of a classification task, "
            f"not train.loss {loss} on a {task} task"
        )
    return partial(_WEIGHTED[task], weight=weight)


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
