"""Optimisers and per-epoch learning-rate schedules.

Schedulers are stepped once per epoch. The task's loss and scores live in :mod:`medflow.ml.task`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch.optim import lr_scheduler

from medflow.config.section import Section
from medflow.ml.names import check_known

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimConfig",
    "build_optimizer",
    "build_scheduler",
]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")


@dataclass(frozen=True)
class OptimConfig(Section):
    """Optimiser and per-epoch schedule settings: the study's ``optim`` section (schema
    ``$defs/optim``), with the sweep's choices applied.

    ``momentum`` is used by ``momentum``, ``nesterov`` and ``rmsprop``; ``step_size`` and
    ``gamma`` by the ``step`` schedule. ``warmup_epochs`` of linear warm-up precede any
    schedule.
    """

    SCHEMA: ClassVar[str] = "optim"

    name: str
    lr: float
    weight_decay: float
    momentum: float
    schedule: str
    warmup_epochs: int
    step_size: int
    gamma: float


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
    check_known("optimizer", cfg.name, OPTIMIZERS)
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
    check_known("schedule", cfg.schedule, SCHEDULES)
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
