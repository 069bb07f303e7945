"""Which monitored validation metrics are minimised; a dependency-free module so that
stages which only read or write sweep records need not import torch."""

from __future__ import annotations

MINIMISED = ("val_loss", "val_mse")


def direction(monitor: str) -> str:
    """Optuna's study direction for ``monitor``."""
    return "minimize" if monitor in MINIMISED else "maximize"
