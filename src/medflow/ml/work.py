"""How much arithmetic a model does: multiply-accumulates of one forward pass for one input
(convolutions of any dimension and linear layers), counted with forward hooks on a real pass
of a zero input, in eval mode and without gradients (no running statistics move)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    total = 0

    def count(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += out[0].numel() * module.in_features
        else:
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += out[0].numel() * fan_in

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, _COUNTED)]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total
