"""Training checkpoints: the loop's state after each epoch, written atomically, and resuming.

A checkpoint carries the digest of the run's config; one written by another config is
ignored. The global RNG state is saved too, so a resumed run ends exactly as an
uninterrupted one (CPU).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medflow.ml.torch_files import load_weights_file

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What a checkpoint restores: progress, early-stopping state and the best weights."""

    epoch: int = 0
    best_value: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def save_checkpoint(
    path: Path,
    config: Mapping[str, Any],
    digest: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
) -> None:
    """Write the run's ``config`` (with its ``digest``), weights, optimiser, RNG and ``state``."""
    payload = {
        "config": config,
        "config_digest": digest,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "epoch": state.epoch,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "best_state": state.best_state,
        "history": state.history,
        "train_seconds": state.train_seconds,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def resume(
    path: Path,
    digest: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Load the checkpoint at ``path`` into the objects given; a fresh state if its config
    ``digest`` differs (a checkpoint of another run)."""
    payload = load_weights_file(path, "delete it to train this run from its first epoch")
    if payload.get("config_digest") != digest:
        log.warning("checkpoint %s belongs to another config; starting afresh", path)
        return TrainState()
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    log.info("resuming from %s after epoch %d", path, payload["epoch"])
    return TrainState(
        epoch=payload["epoch"],
        best_value=payload["best_value"],
        best_epoch=payload["best_epoch"],
        bad_epochs=payload["bad_epochs"],
        best_state=payload["best_state"],
        history=payload["history"],
        train_seconds=payload["train_seconds"],
    )
