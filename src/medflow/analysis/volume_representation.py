"""What a trained volume model learned, shown as slices: the first layer's 3-D filters (each
kernel's axial slices side by side) and the feature maps after the first conv block for a
few test volumes (the central axial slice of the input beside the same slice of its most
varying channels). The analyze stage draws them; the report only embeds the PNGs."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from medflow.analysis.representation import FEATURE_MAP_CHANNELS, example_rows, first_block
from medflow.data.format import PreparedDataset

MAX_FILTERS = 16
EXAMPLES = 3
_TIMES = "\u00d7"


def first_conv3d(model: nn.Module) -> nn.Conv3d | None:
    return next((m for m in model.backbone.modules() if isinstance(m, nn.Conv3d)), None)


def filters3d_figure(conv: nn.Conv3d, who: str) -> tuple[Figure, str]:
    """One row per kernel (mean over input channels): its depth slices side by side, all
    slices of a kernel on the kernel's own range; and the caption."""
    weight = conv.weight.detach().float().cpu().numpy()[:MAX_FILTERS].mean(axis=1)  # (n,k,k,k)
    n, depth = weight.shape[:2]
    groups = 2 if n > 8 else 1  # two kernels per row keep the figure compact
    rows = math.ceil(n / groups)
    fig = Figure(figsize=(0.75 * depth * groups + 0.3, 0.75 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, depth * groups, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k in range(n):
        row, col0 = divmod(k, groups)
        kernel = weight[k]
        low, high = float(kernel.min()), float(kernel.max())
        for d in range(depth):
            ax = axes[row][col0 * depth + d]
            ax.imshow(kernel[d], cmap="gray", vmin=low, vmax=high or None, interpolation="nearest")
            if d == 0:
                ax.set_title(f"{k}", fontsize=6, loc="left")
    size = _TIMES.join(map(str, conv.kernel_size))
    caption = (
        f"First-layer 3-D conv filters ({n} of {conv.out_channels}, {size}, mean over "
        f"{conv.in_channels} input channel(s)): each kernel's {depth} depth slices left to "
        f"right on the kernel's own grey scale; model {who}."
    )
    return fig, caption


def feature_maps3d_figure(model: nn.Module, data: PreparedDataset, who: str) -> tuple[Figure, str]:
    """Central axial slices of a few test volumes and of their most varying first-block
    channels, and the caption."""
    test = data.load("test")
    rows = example_rows(test.y, EXAMPLES)
    x = torch.from_numpy(data.normalise(test.x[rows]))
    model.eval()
    with torch.no_grad():
        maps = first_block(model, x).float().cpu().numpy()  # (n, C, D, H, W)
    order = np.argsort(-maps.var(axis=(0, 2, 3, 4)))[:FEATURE_MAP_CHANNELS]
    fig = Figure(figsize=(1.3 * (len(order) + 1), 1.35 * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(order) + 1, squeeze=False)
    names = data.meta.get("class_names") or []
    depth, map_depth = test.x.shape[2], maps.shape[2]
    for r, row in enumerate(rows):
        axes[r][0].imshow(test.x[row, 0, depth // 2], cmap="gray", interpolation="nearest")
        label = test.y[row]
        title = names[int(label)] if np.ndim(label) == 0 and int(label) < len(names) else "input"
        axes[r][0].set_title(f"test #{row}: {title}", fontsize=7)
        for c, channel in enumerate(order, start=1):
            axes[r][c].imshow(maps[r, channel, map_depth // 2], cmap="magma")
            if r == 0:
                axes[r][c].set_title(f"ch {channel}", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    caption = (
        f"Feature maps after the first conv block (3-D conv, norm, activation) for {len(rows)} "
        f"test volumes, central axial slice (depth {depth // 2} of {depth}); the {len(order)} "
        f"channels with the most variance; model {who}."
    )
    return fig, caption
