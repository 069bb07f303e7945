"""The signals section of a study whose target is a sequence dataset: example series of
each class (from the train split; the report never opens the test split) and the learned
first-layer filters of the best-on-validation model when it is a 1-D CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medflow.config.types import StudyConfig
from medflow.data.format import PreparedDataset
from medflow.render.blocks import Block, figure, note, p
from medflow.render.context import ReportContext, read_json

PER_CLASS = 3
MAX_FILTERS = 16


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    layout = ctx.layout
    meta = read_json(layout.prepared_meta(study.target))
    if meta is None:
        return [note(f"Dataset {study.target} is not prepared.")]
    if meta.get("kind") != "sequence":
        return [p("Does not apply: the target is not a sequence dataset.")]
    data = PreparedDataset.open(layout.prepared(study.target))
    blocks = [figure(_examples(data), "Example training series per class", "example series")]
    best = _best_model(ctx, study)
    if best is None:
        return [*blocks, note("No refine model found for the best-on-validation run.")]
    who, path = best
    filters = _first_conv1d_weights(path)
    if filters is None:
        arch = study.model.get("arch")
        return [*blocks, p(f"The {arch} model ({who}) has no 1-D convolution to show.")]
    caption = f"First-layer filters of the best model on validation ({who})"
    return [*blocks, figure(_filters(filters, meta.get("sampling_rate")), caption, "filters")]


def _examples(data: PreparedDataset) -> Figure:
    train = data.load("train")
    names = data.meta["class_names"]
    rate = data.meta.get("sampling_rate")
    t = np.arange(train.x.shape[-1]) / (rate or 1.0)
    fig = Figure(figsize=(8, 1.3 * len(names) + 0.5))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for label, (ax, name) in enumerate(zip(axes, names, strict=True)):
        for row in np.flatnonzero(train.y == label)[:PER_CLASS]:
            ax.plot(t, train.x[row, 0], linewidth=0.8)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("seconds" if rate else "samples")
    fig.tight_layout()
    return fig


def _best_model(ctx: ReportContext, study: StudyConfig) -> tuple[str, Path] | None:
    metrics = read_json(ctx.layout.evaluate_metrics(study.name)) or {}
    best = metrics.get("best_on_validation") or {}
    mode, seed = best.get("mode"), best.get("seed")
    if mode is None or seed is None:
        return None
    path = ctx.layout.refine_model(study.name, mode, seed)
    return (f"{mode} seed {seed}", path) if path.exists() else None


def _first_conv1d_weights(path: Path) -> np.ndarray | None:
    from torch import nn

    from medflow.ml.transfer import load_model_file

    model, _ = load_model_file(path)
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv1d)), None)
    return None if conv is None else conv.weight.detach().cpu().numpy()


def _filters(weights: np.ndarray, rate: float | None) -> Figure:
    shown = weights[:MAX_FILTERS, 0]  # (filters, kernel) of the first input channel
    cols = min(8, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    fig = Figure(figsize=(1.2 * cols, 1.0 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, kernel in zip(axes, shown, strict=False):
        ax.plot(kernel, marker=".", linewidth=0.8, markersize=3)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(shown) :]:
        ax.axis("off")
    unit = f" (kernel of {weights.shape[-1]} samples at {rate:g} Hz)" if rate else ""
    fig.suptitle(f"conv filters{unit}", fontsize=8)
    return fig
