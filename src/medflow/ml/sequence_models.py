"""Sequence models for (N, C, T) signals: recurrent (lstm, gru) and 1-D convolutional
(cnn1d, resnet1d, inception_time) backbones, each returning ``(N, feature_dim)`` features
for medflow's Classifier head, so finetune, linear probe and the sweep treat them like
any other model.

Config keys: ``width`` is the recurrent hidden size or the first conv layer's channels,
``depth`` the recurrent layers, the cnn1d blocks or the InceptionTime residual blocks (of
three modules each); ``bidirectional`` applies to lstm/gru; ``activation`` (the sweep's)
follows every conv block and the recurrent read-out. resnet1d keeps the three blocks of
Wang et al. (2017).

On CUDA, nn.LSTM/nn.GRU run cuDNN's fused kernels. Under the loop's bf16 autocast the
recurrent layer itself runs in float32 (autocast disabled around it): cuDNN's reduced-
precision RNN paths accumulate the hidden state over hundreds of steps, where bf16's 8-bit
mantissa drifts; the convolutions around it keep bf16.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from medflow.ml.models import SEQUENCE_ARCHS, make_activation

_MIN_POOL_T = 4  # cnn1d halves the length only while it is at least this long


def sequence_backbone(cfg: Any, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    """The backbone of sequence arch ``cfg.arch`` for inputs (C, T), and its feature size."""
    if len(input_shape) != 2:
        raise ValueError(f"arch {cfg.arch!r} needs sequence inputs (C, T), got {input_shape}")
    channels = input_shape[0]
    if cfg.arch in ("lstm", "gru"):
        backbone = RecurrentBackbone(cfg.arch, channels, cfg)
        return backbone, backbone.feature_dim
    builders = {"cnn1d": _cnn1d, "resnet1d": _resnet1d, "inception_time": _inception_time}
    try:
        build = builders[cfg.arch]
    except KeyError:
        raise ValueError(f"unknown sequence arch {cfg.arch!r}; known: {SEQUENCE_ARCHS}") from None
    layers, out_channels = build(cfg, channels)
    layers["pool"] = nn.AdaptiveAvgPool1d(1)  # global average pooling over time
    layers["flatten"] = nn.Flatten()
    if cfg.dropout > 0:
        layers["dropout"] = nn.Dropout(cfg.dropout)
    return nn.Sequential(layers), out_channels


class RecurrentBackbone(nn.Module):
    """LSTM/GRU over time; features: the last layer's final hidden state (both directions)."""

    def __init__(self, kind: str, channels: int, cfg: Any):
        super().__init__()
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn(
            input_size=channels,
            hidden_size=cfg.width,
            num_layers=cfg.depth,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.depth > 1 else 0.0,
        )
        self.directions = 2 if cfg.bidirectional else 1
        self.feature_dim = cfg.width * self.directions
        self.act = make_activation(cfg.activation)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            _, state = self.rnn(x.transpose(1, 2).float())  # (N, C, T) -> (N, T, C)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        last = hidden[-self.directions :].transpose(0, 1).reshape(len(x), -1)
        return self.dropout(self.act(last))


def _conv_bn(c_in: int, c_out: int, kernel: int) -> list[tuple[str, nn.Module]]:
    # Explicit "same" padding (one more on the right for even kernels, as padding="same"
    # would do after copying the input); no conv bias, the BatchNorm has its own shift.
    return [
        ("pad", nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0)),
        ("conv", nn.Conv1d(c_in, c_out, kernel, bias=False)),
        ("bn", nn.BatchNorm1d(c_out)),
    ]


def _cnn1d(cfg: Any, channels: int) -> tuple[OrderedDict[str, nn.Module], int]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(cfg.depth):
        out = cfg.width * 2**i
        for name, module in _conv_bn(channels, out, 7 if i == 0 else 5):
            layers[f"{name}{i}"] = module
        layers[f"act{i}"] = make_activation(cfg.activation)
        layers[f"pool{i}"] = _SafePool()
        channels = out
    return layers, channels


class _SafePool(nn.Module):
    """Max-pool by 2 while the series is at least _MIN_POOL_T long, so any depth fits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool1d(x, 2) if x.shape[-1] >= _MIN_POOL_T else x


class ResidualBlock1d(nn.Module):
    """Three conv-BN(-activation) layers with kernels 8, 5, 3 and a (1x1 conv) shortcut."""

    def __init__(self, c_in: int, c_out: int, activation: str):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, kernel in enumerate((8, 5, 3)):
            for name, module in _conv_bn(c_in if i == 0 else c_out, c_out, kernel):
                layers[f"{name}{i}"] = module
            if i < 2:
                layers[f"act{i}"] = make_activation(activation)
        self.body = nn.Sequential(layers)
        self.shortcut = nn.Sequential(
            nn.Conv1d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity(),
            nn.BatchNorm1d(c_out),
        )
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def _resnet1d(cfg: Any, channels: int) -> tuple[OrderedDict[str, nn.Module], int]:
    # Wang, Yan & Oates (2017): blocks of 64, 128, 128 channels; here width, 2w, 2w.
    widths = (cfg.width, 2 * cfg.width, 2 * cfg.width)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, out in enumerate(widths):
        layers[f"block{i}"] = ResidualBlock1d(channels, out, cfg.activation)
        channels = out
    return layers, channels


class InceptionModule(nn.Module):
    """Bottleneck, three parallel convs (kernels 39, 19, 9) and a max-pool branch."""

    def __init__(self, c_in: int, filters: int, activation: str, bottleneck: int = 32):
        super().__init__()
        self.bottleneck = nn.Conv1d(c_in, bottleneck, 1, bias=False) if c_in > 1 else nn.Identity()
        width = bottleneck if c_in > 1 else c_in
        self.convs = nn.ModuleList(
            nn.Conv1d(width, filters, k, padding="same", bias=False) for k in (39, 19, 9)
        )
        self.pool_conv = nn.Sequential(
            nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, filters, 1, bias=False)
        )
        self.bn = nn.BatchNorm1d(4 * filters)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        branches = [conv(z) for conv in self.convs] + [self.pool_conv(x)]
        return self.act(self.bn(torch.cat(branches, dim=1)))


class InceptionBlock(nn.Module):
    """Three inception modules with a residual shortcut around them (Fawaz et al. 2020)."""

    def __init__(self, c_in: int, filters: int, activation: str):
        super().__init__()
        out = 4 * filters
        self.modules_ = nn.Sequential(
            *(InceptionModule(c_in if i == 0 else out, filters, activation) for i in range(3))
        )
        self.shortcut = nn.Sequential(nn.Conv1d(c_in, out, 1, bias=False), nn.BatchNorm1d(out))
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.modules_(x) + self.shortcut(x))


def _inception_time(cfg: Any, channels: int) -> tuple[OrderedDict[str, nn.Module], int]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(cfg.depth):
        layers[f"block{i}"] = InceptionBlock(channels, cfg.width, cfg.activation)
        channels = 4 * cfg.width
    return layers, channels
