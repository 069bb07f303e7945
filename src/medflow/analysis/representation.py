"""What a trained model learned: for image models the first layer's filters and the feature
maps after the first conv block for a few test images; for sequence models a time-resolved
gradient saliency of a few test series (one per class where possible)."""

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
    """Output of the first conv block: the first conv (2-D or 3-D) with its norm and
    activation."""
    norms = (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)
    elementwise = (*norms, *{type(make()) for make in ACTIVATIONS.values()})
    started = False
    for module in model.backbone.children():
        if not started:
            x = module(x)
            started = isinstance(module, nn.Conv2d | nn.Conv3d)
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


def saliency(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(|d logit of the predicted class / d input| summed over channels (N, T), predicted
    class (N,)). Binary models have one logit: its sign is the decision, so the saliency of
    a negative prediction is that of the negated logit (the same magnitude)."""
    model.eval()
    x = x.clone().requires_grad_(True)
    logits = model(x)
    if logits.ndim == 1 or logits.shape[1] == 1:
        z = logits.reshape(-1)
        predicted = (z > 0).long()
        chosen = z
    else:
        predicted = logits.argmax(dim=1)
        chosen = logits.gather(1, predicted[:, None]).squeeze(1)
    (grad,) = torch.autograd.grad(chosen.sum(), x)
    return grad.abs().sum(dim=1).detach().cpu().numpy(), predicted.cpu().numpy()


def saliency_figure(model: nn.Module, data: PreparedDataset, who: str) -> tuple[Figure, str]:
    """A few test series (one per class where possible), each over its time-resolved
    gradient saliency, and the caption."""
    test = data.load("test")
    rows = example_rows(test.y, count=4)
    x = torch.from_numpy(data.normalise(test.x[rows]))
    sal, predicted = saliency(model, x)
    rate = data.meta.get("sampling_rate")
    t = np.arange(test.x.shape[-1]) / (rate or 1.0)
    names = data.meta.get("class_names") or []
    fig = Figure(figsize=(8, 1.5 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, row, s, pred in zip(axes, rows, sal, predicted, strict=True):
        shade = ax.twinx()
        shade.fill_between(t, 0, s / (s.max() or 1.0), color="tab:red", alpha=0.25, step="mid")
        shade.set_ylim(0, 1.05)
        shade.set_yticks([])
        ax.plot(t, test.x[row, 0], color="black", linewidth=0.8)
        ax.set_zorder(shade.get_zorder() + 1)
        ax.patch.set_visible(False)
        truth, guess = _name(names, test.y[row]), _name(names, pred)
        ax.set_title(f"test #{row}: {truth}, predicted {guess}", fontsize=7, loc="left")
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("seconds" if rate else "samples")
    caption = (
        f"Time-resolved saliency for {len(rows)} test series: |gradient| of the predicted "
        f"class's logit with respect to each input sample (summed over channels, red, scaled "
        f"per series) under the first channel (black); model {who}."
    )
    return fig, caption


def _name(names: list[str], label: Any) -> str:
    k = int(np.asarray(label).reshape(-1)[0])
    return names[k] if k < len(names) else str(k)
