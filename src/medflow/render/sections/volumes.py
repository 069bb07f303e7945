"""The volumes section of a study whose target is a volume dataset: a slice montage of
example volumes of each class (from the train split; the report never opens the test
split). The learned 3-D filters and feature maps, which need a model and test volumes, are
drawn by the analyze stage and shown in the deep-representation section."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from medflow.config.types import StudyConfig
from medflow.data.format import PreparedDataset
from medflow.render.blocks import Block, figure, note, p
from medflow.render.context import ReportContext, read_json

PER_CLASS = 2
SLICES = 6
MAX_CLASSES = 12
_TIMES = "\u00d7"


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    meta = read_json(ctx.layout.prepared_meta(study.target))
    if meta is None:
        return [note(f"Dataset {study.target} is not prepared.")]
    if meta.get("kind") != "volume":
        return [p("Does not apply: the target is not a volume dataset.")]
    data = PreparedDataset.open(ctx.layout.prepared(study.target))
    fig, text = montage(data)
    return [figure(fig, text, "example volumes as slices")]


def slice_positions(depth: int, count: int = SLICES) -> list[int]:
    """``count`` evenly spaced axial slices inside the volume (the ends left out)."""
    return [round(float(v)) for v in np.linspace(0, depth - 1, count + 2)[1:-1]]


def montage(data: PreparedDataset) -> tuple[Figure, str]:
    """Rows of axial slices: PER_CLASS train volumes of each class (the first in file order),
    on one shared 0-255 grey scale; and the caption."""
    train = data.load("train")
    names = list(data.meta["class_names"])[:MAX_CLASSES]
    y = train.y if train.y.ndim == 1 else train.y.argmax(axis=1)
    rows = [(name, i) for k, name in enumerate(names) for i in np.flatnonzero(y == k)[:PER_CLASS]]
    depth = train.x.shape[2]
    positions = slice_positions(depth)
    fig = Figure(figsize=(1.0 * len(positions) + 1.6, 1.0 * max(len(rows), 1) + 0.4))
    axes = fig.subplots(max(len(rows), 1), len(positions), squeeze=False)
    for r, (name, i) in enumerate(rows):
        for c, z in enumerate(positions):
            ax = axes[r][c]
            ax.imshow(train.x[i, 0, z], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"z={z}", fontsize=7)
        axes[r][0].set_ylabel(f"{name}\n#{i}", rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    size = _TIMES.join(map(str, train.x.shape[2:]))
    text = (
        f"Example training volumes ({size} voxels), {PER_CLASS} per class: {len(positions)} "
        f"evenly spaced axial slices each, on one 0-255 grey scale."
    )
    return fig, text
