"""What the first layer of a trained conv model learned: its filters, and the feature maps
after the first conv block for a few test images (one per class where possible)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from medflow.data.format import PreparedDataset
from medflow.ml.models import ACTIVATIONS

FEATURE_MAP_CHANNELS = 8
MAX_FILTERS = 64
EXAMPLES = 3
_TIMES = "\u00d7"


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)), None)


def filters_figure(conv: nn.Conv2d, who: str) -> tuple[Figure, str]:
    """The first-layer kernels, each scaled to its own range, and the figure's caption."""
    weight = conv.weight.detach().cpu().numpy()[:MAX_FILTERS]
    n, channels = weight.shape[:2]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.1 * cols, 1.1 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        kernel = weight[k]
        if channels == 3:
            img = np.transpose(kernel, (1, 2, 0))
            ax.imshow((img - img.min()) / (np.ptp(img) or 1.0), interpolation="nearest")
        else:
            ax.imshow(kernel.mean(axis=0), cmap="gray", interpolation="nearest")
        ax.set_title(str(k), fontsize=7)
    shown = "RGB" if channels == 3 else f"mean over {channels} input channel(s)"
    caption = (
        f"First-layer conv filters ({n} of {conv.out_channels}, {conv.kernel_size[0]}{_TIMES}"
        f"{conv.kernel_size[1]}, {shown}, each scaled to its own range); model {who}."
    )
    return fig, caption


def first_block(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output of the first conv block: the first conv with its norm and activation."""
    elementwise = (nn.BatchNorm2d, nn.GroupNorm, *{type(make()) for make in ACTIVATIONS.values()})
    started = False
    for module in model.backbone.children():
        if not started:
            x = module(x)
            started = isinstance(module, nn.Conv2d)
        elif isinstance(module, elementwise):
            x = module(x)
        else:
            break
    return x


def example_rows(y: np.ndarray, count: int = EXAMPLES) -> list[int]:
    """Rows of the first example of each class (then the first others), up to ``count``."""
    if y.ndim > 1:
        return list(range(min(count, len(y))))
    rows: dict[Any, int] = {}
    for i, label in enumerate(y.tolist()):
        rows.setdefault(label, i)
        if len(rows) == count:
            break
    chosen = list(rows.values())
    chosen += [i for i in range(len(y)) if i not in chosen][: count - len(chosen)]
    return sorted(chosen)


def feature_maps_figure(model: nn.Module, data: PreparedDataset, who: str) -> tuple[Figure, str]:
    """Test images beside their most varying first-block channels, and the caption."""
    test = data.load("test")
    rows = example_rows(test.y)
    x = torch.from_numpy(data.normalise(test.x[rows]))
    with torch.no_grad():
        maps = first_block(model, x).cpu().numpy()
    order = np.argsort(-maps.var(axis=(0, 2, 3)))[:FEATURE_MAP_CHANNELS]
    fig = Figure(figsize=(1.3 * (len(order) + 1), 1.35 * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(order) + 1, squeeze=False)
    names = data.meta.get("class_names") or []
    for r, row in enumerate(rows):
        image = test.x[row].astype(np.float64)
        image = (image - image.min()) / (np.ptp(image) or 1.0)
        shown = np.transpose(image, (1, 2, 0)) if image.shape[0] == 3 else image[0]
        axes[r][0].imshow(shown, cmap=None if image.shape[0] == 3 else "gray")
        label = test.y[row]
        title = names[int(label)] if np.ndim(label) == 0 and int(label) < len(names) else "input"
        axes[r][0].set_title(f"test #{row}: {title}", fontsize=7)
        for c, channel in enumerate(order, start=1):
            axes[r][c].imshow(maps[r, channel], cmap="magma", interpolation="nearest")
            if r == 0:
                axes[r][c].set_title(f"ch {channel}", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    caption = (
        f"Feature maps after the first conv block (conv, norm, activation) for {len(rows)} test "
        f"images; the {len(order)} channels with the most variance; model {who}."
    )
    return fig, caption
