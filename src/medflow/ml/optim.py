"""Optimisers, learning-rate schedules and task losses.

Schedulers are stepped once per epoch. Losses take raw logits: the model never applies the
output sigmoid/softmax itself, :func:`predict_scores` does that for prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler

from medflow.config.strict import reject_unknown_keys

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "TASKS",
    "LossFn",
    "OptimConfig",
    "build_loss",
    "build_optimizer",
    "build_scheduler",
    "n_outputs_for",
    "predict_scores",
]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel", "regression")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
LOSSES: tuple[str, ...] = ("auto", "squared_error")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and per-epoch schedule settings (validated on construction).

    ``momentum`` is used by ``momentum``, ``nesterov`` and ``rmsprop``; ``step_size`` and
    ``gamma`` by the ``step`` schedule. ``warmup_epochs`` of linear warm-up precede any
    schedule.
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: int = 0
    step_size: int = 10
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _check_name("optimizer", self.name, OPTIMIZERS)
        _check_name("schedule", self.schedule, SCHEDULES)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.name == "nesterov" and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.warmup_epochs < 0 or self.step_size < 1:
            raise ValueError("warmup_epochs must be >= 0 and step_size >= 1")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OptimConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys are an error."""
        reject_unknown_keys(cls, d)
        return cls(**d)


def _check_name(kind: str, name: str, known: Iterable[str]) -> None:
    known = tuple(known)
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(known)}")


# --- optimisers ---------------------------------------------------------------------------


def _sgd(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.0, weight_decay=cfg.weight_decay)


def _momentum(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _nesterov(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )


def _adagrad(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _rmsprop(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def _adam(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    # Adam's weight_decay is the classic L2 penalty added to the gradient.
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _adamw(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    # AdamW decouples the decay from the adaptive step (Loshchilov & Hutter).
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


OPTIMIZERS: Mapping[str, Callable[[Params, OptimConfig], torch.optim.Optimizer]] = MappingProxyType(
    {
        "sgd": _sgd,
        "momentum": _momentum,
        "nesterov": _nesterov,
        "adagrad": _adagrad,
        "rmsprop": _rmsprop,
        "adam": _adam,
        "adamw": _adamw,
    }
)


def build_optimizer(cfg: OptimConfig, params: Params) -> torch.optim.Optimizer:
    """Optimiser ``cfg.name`` over ``params`` (tensors or param-group dicts)."""
    _check_name("optimizer", cfg.name, OPTIMIZERS)
    return OPTIMIZERS[cfg.name](params, cfg)


# --- schedules ----------------------------------------------------------------------------


def _constant_factor(_epoch: int) -> float:
    return 1.0


def _main_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int
) -> lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        # Anneal over the epochs left after warm-up so the last epoch ends near lr=0.
        t_max = max(1, epochs - cfg.warmup_epochs)
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)
    if cfg.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return lr_scheduler.LambdaLR(optimizer, _constant_factor)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, epochs: int
) -> lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``cfg.warmup_epochs`` of linear warm-up, then ``cfg.schedule``.

    Warm-up epoch ``e`` (0-based) uses ``lr * (e + 1) / (warmup_epochs + 1)``, so the lr
    rises strictly and reaches ``lr`` at the first scheduled epoch. Resume by building the
    optimizer and scheduler the same way, then ``load_state_dict`` on both.
    """
    _check_name("schedule", cfg.schedule, SCHEDULES)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if cfg.warmup_epochs == 0:
        return _main_scheduler(optimizer, cfg, epochs)
    warmup = lr_scheduler.LinearLR(
        optimizer,
        start_factor=1.0 / (cfg.warmup_epochs + 1),
        end_factor=1.0,
        total_iters=cfg.warmup_epochs,
    )
    main = _main_scheduler(optimizer, cfg, epochs)
    return lr_scheduler.SequentialLR(
        optimizer, schedulers=[warmup, main], milestones=[cfg.warmup_epochs]
    )


# --- losses -------------------------------------------------------------------------------


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
    _check_name("task", task, TASKS)
    _check_name("loss", loss, LOSSES)
    return _LOSS_FNS[(task, loss)]


def n_outputs_for(task: str, n_classes: int) -> int:
    """Model outputs for ``task``: 1 for binary, else ``n_classes`` (labels, targets)."""
    _check_name("task", task, TASKS)
    if n_classes < 1 or (task in ("binary", "multiclass") and n_classes < 2):
        raise ValueError(f"n_classes={n_classes} is too small for a {task} task")
    return 1 if task == "binary" else n_classes


def predict_scores(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> scores: P(y=1) of shape (N,) for binary, softmax rows for multiclass,
    per-label sigmoids for multilabel, the raw outputs for regression."""
    _check_name("task", task, TASKS)
    if task == "binary":
        return torch.sigmoid(_binary_logits(logits))
    if task == "multiclass":
        return torch.softmax(logits, dim=1)
    if task == "multilabel":
        return torch.sigmoid(logits)
    return logits
