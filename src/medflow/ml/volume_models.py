"""Volume models for (N, C, D, H, W) inputs: a small 3-D CNN (cnn3d) and a 3-D ResNet-18
(resnet18_3d), each a backbone returning ``(N, feature_dim)`` features for medflow's
Classifier head, so finetune, linear probe and the sweep treat them like any other model.

Config keys: ``width`` is the first block's channels (cnn3d doubles them per block;
resnet18_3d has four stages of two basic blocks with width, 2w, 4w, 8w channels, the
torchvision ResNet-18 layout with every convolution 3-D, as in the MedMNIST v2 paper's
"ResNet-18 + 3D"); ``depth`` is the cnn3d's number of blocks; ``activation`` (the sweep's)
follows every convolution. Below SMALL_INPUT_PX voxels a side resnet18_3d uses a 3x3x3 stride-1
stem without max-pool (as the 2-D ResNets do for 28x28), so 28^3 volumes keep their detail
into the first stage. On CUDA with ``train.amp`` the loop trains them in bf16 and
channels_last_3d (medflow.ml.device).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from medflow.ml.models import SMALL_INPUT_PX, VOLUME_ARCHS, make_activation

_MIN_POOL_VOXELS = 4  # cnn3d halves the volume only while each side is at least this long


def volume_backbone(cfg: Any, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    """The backbone of volume arch ``cfg.arch`` for inputs (C, D, H, W), and its feature size."""
    if len(input_shape) != 4:
        raise ValueError(
            f"arch {cfg.arch!r} needs volume inputs (C, D, H, W), got {tuple(input_shape)}"
        )
    builders = {"cnn3d": _cnn3d, "resnet18_3d": _resnet18_3d}
    try:
        build = builders[cfg.arch]
    except KeyError:
        raise ValueError(f"unknown volume arch {cfg.arch!r}; known: {VOLUME_ARCHS}") from None
    layers, channels = build(cfg, input_shape)
    layers["avgpool"] = nn.AdaptiveAvgPool3d(1)  # global average over the volume
    layers["flatten"] = nn.Flatten()
    if cfg.dropout > 0:
        layers["dropout"] = nn.Dropout(cfg.dropout)
    return nn.Sequential(layers), channels


def _cnn3d(cfg: Any, shape: tuple[int, ...]) -> tuple[OrderedDict[str, nn.Module], int]:
    channels, size = shape[0], min(shape[1:])
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(cfg.depth):
        out = cfg.width * 2**i
        # No conv bias: the following BatchNorm has its own shift.
        layers[f"conv{i}"] = nn.Conv3d(channels, out, 3, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm3d(out)
        layers[f"act{i}"] = make_activation(cfg.activation)
        if size >= _MIN_POOL_VOXELS:
            layers[f"pool{i}"] = nn.MaxPool3d(2)
            size //= 2
        channels = out
    return layers, channels


class BasicBlock3d(nn.Module):
    """torchvision's ResNet BasicBlock with 3x3x3 convolutions and a 1x1x1 projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.downsample = (
            nn.Sequential(
                nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm3d(c_out)
            )
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.downsample(x))


def _resnet18_3d(cfg: Any, shape: tuple[int, ...]) -> tuple[OrderedDict[str, nn.Module], int]:
    channels, size = shape[0], min(shape[1:])
    width = cfg.width
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if size < SMALL_INPUT_PX:
        layers["conv1"] = nn.Conv3d(channels, width, 3, stride=1, padding=1, bias=False)
    else:
        layers["conv1"] = nn.Conv3d(channels, width, 7, stride=2, padding=3, bias=False)
    layers["bn1"] = nn.BatchNorm3d(width)
    layers["act1"] = make_activation(cfg.activation)
    if size >= SMALL_INPUT_PX:
        layers["maxpool"] = nn.MaxPool3d(3, stride=2, padding=1)
    c_in = width
    for stage, multiple in enumerate((1, 2, 4, 8), start=1):
        c_out = width * multiple
        stride = 1 if stage == 1 else 2
        layers[f"layer{stage}"] = nn.Sequential(
            BasicBlock3d(c_in, c_out, stride, cfg.activation),
            BasicBlock3d(c_out, c_out, 1, cfg.activation),
        )
        c_in = c_out
    for module in layers.values():
        for m in module.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return layers, c_in
