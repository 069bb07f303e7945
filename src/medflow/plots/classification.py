"""Figures of a classifier's test predictions: confusion matrices, ROC curves and the
reliability diagram.

Figures are built on ``matplotlib.figure.Figure`` directly (not pyplot), so they render
headless with Agg, need no ``plt.close`` and never pile up in pyplot's global registry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix, roc_curve

from medflow.stats.calibration import bin_ids, calibration_pairs
from medflow.stats.metrics import predictions
from medflow.stats.operating_point import decisions
from medflow.stats.scores import binary_auc, check_scores, n_outputs, names_for, one_vs_rest


def _annotate_cells(ax, counts: np.ndarray, rates: np.ndarray, fontsize: float) -> None:
    for (i, j), count in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            f"{count}\n{rates[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=fontsize,
            color="white" if rates[i, j] > 0.5 else "black",
        )


def _row_rates(counts: np.ndarray) -> np.ndarray:
    """Rows normalised to fractions of the true class (recall on the diagonal)."""
    totals = counts.sum(axis=-1, keepdims=True)
    return counts / np.where(totals > 0, totals, 1)


def _multilabel_confusion_figure(
    y: np.ndarray, pred: np.ndarray, names: list[str], rule: str
) -> Figure:
    matrices = multilabel_confusion_matrix(y, pred)
    ncols = min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(2.3 * ncols + 0.8, 2.3 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    image = None
    for ax, name, counts in zip(axes, names, matrices, strict=False):
        rates = _row_rates(counts)
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        _annotate_cells(ax, counts, rates, fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([0, 1], ["0", "1"])
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes.tolist(), label="fraction of true class", shrink=0.8)
    fig.suptitle(f"Per-label confusion ({rule})")
    return fig


def confusion_figure(
    task: str,
    y: ArrayLike,
    scores: ArrayLike,
    class_names: Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
) -> Figure:
    """Row-normalised confusion matrix with counts; multilabel: one 2x2 matrix per label.

    Binary and multilabel decisions use ``thresholds`` (the operating point) when given,
    else 0.5; multiclass the arg-max.
    """
    if task == "regression":
        raise ValueError("a confusion matrix needs a classification task")
    y_arr, s_arr = check_scores(task, y, scores)
    if thresholds is not None and task != "multiclass":
        pred = decisions(task, s_arr, thresholds).astype(np.int64)
        pred = pred[:, 0] if task == "binary" else pred
        rule = "operating point " + ", ".join(f"{t:.3g}" for t in thresholds)
    else:
        pred = predictions(task, s_arr)
        rule = "threshold 0.5"
    names = names_for(class_names, n_outputs(task, s_arr))
    if task == "multilabel":
        return _multilabel_confusion_figure(y_arr, pred, names, rule)
    counts = confusion_matrix(y_arr, pred, labels=np.arange(len(names)))
    rates = _row_rates(counts)
    side = max(3.5, 0.55 * len(names) + 2.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    _annotate_cells(ax, counts, rates, fontsize=9 if len(names) <= 6 else 7)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45 if len(names) > 4 else 0, ha="right")
    ax.set_yticks(ticks, names)
    title = "Confusion matrix (row-normalised" + (f", {rule})" if task == "binary" else ")")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    return fig


def roc_figure(
    task: str, y: ArrayLike, scores: ArrayLike, class_names: Sequence[str] | None = None
) -> Figure:
    """ROC curves: binary one curve; multiclass one-vs-rest per class; multilabel per label.

    With several curves a macro-average curve (TPR averaged on a common FPR grid) is added,
    labelled with the mean per-class AUC, the number the metrics report. Classes with a
    single label value in ``y`` have no ROC curve and are listed as skipped.
    """
    if task == "regression":
        raise ValueError("ROC curves need a classification task")
    y_arr, s_arr = check_scores(task, y, scores)
    names = names_for(class_names, n_outputs(task, s_arr))
    truth, cols = one_vs_rest(task, y_arr, s_arr)
    columns = [1] if task == "binary" else range(len(names))
    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = fig.subplots()
    curves, skipped = [], []
    for k in columns:
        if len(np.unique(truth[:, k])) < 2:
            skipped.append(names[k])
            continue
        fpr, tpr, _ = roc_curve(truth[:, k], cols[:, k])
        auc = binary_auc(truth[:, k], cols[:, k])
        curves.append((fpr, tpr, auc))
        ax.plot(fpr, tpr, lw=1.2, label=f"{names[k]} (AUC {auc:.3f})")
    if len(curves) > 1:
        grid = np.linspace(0, 1, 201)
        mean_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr, _ in curves], axis=0)
        macro = float(np.mean([auc for *_, auc in curves]))
        ax.plot(grid, mean_tpr, "k--", lw=2, label=f"macro-average (AUC {macro:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    if skipped:
        note = "no ROC (one class): " + ", ".join(skipped)
        ax.text(0.98, 0.02, note, ha="right", va="bottom", fontsize=7, transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_aspect("equal")
    ax.set_title("ROC" + (" (one-vs-rest)" if task == "multiclass" else ""))
    if curves:
        ax.legend(loc="lower right", fontsize=7 if len(curves) > 5 else 8)
    return fig


def _reliability_points(task: str, y: np.ndarray, scores: np.ndarray, n_bins: int):
    prob, outcome = calibration_pairs(task, y, scores)
    prob, outcome = prob.ravel(), outcome.ravel()  # multilabel: all labels pooled
    observed, predicted = calibration_curve(outcome, prob, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(bin_ids(prob, n_bins), minlength=n_bins)
    return predicted, observed, counts


def reliability_figure(
    task: str,
    y: ArrayLike,
    scores: ArrayLike,
    n_bins: int,
    calibrated: ArrayLike | None = None,
) -> Figure:
    """Observed frequency against mean predicted probability per equal-width bin (sklearn's
    calibration_curve), with the examples per bin below; ``calibrated``: a second curve
    after temperature scaling. Binary: P(class 1); multiclass: top-label confidence against
    correctness; multilabel: every label's probability pooled."""
    if task == "regression":
        raise ValueError("a reliability diagram needs a classification task")
    y_arr, s_arr = check_scores(task, y, scores)
    fig = Figure(figsize=(5.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    curves = [("before" if calibrated is not None else "model", s_arr)]
    if calibrated is not None:
        curves.append(("after temperature scaling", check_scores(task, y_arr, calibrated)[1]))
    edges = np.linspace(0, 1, n_bins + 1)
    for (label, values), marker in zip(curves, ("o-", "s--"), strict=False):
        predicted, observed, counts = _reliability_points(task, y_arr, values, n_bins)
        top.plot(predicted, observed, marker, lw=1.2, ms=4, label=label)
        bottom.stairs(counts, edges, label=label)
    top.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="perfect calibration")
    what = {"binary": "P(class 1)", "multiclass": "top-label confidence"}.get(task, "P(label)")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency", title=f"Reliability ({what})")
    top.legend(loc="lower right", fontsize=8)
    bottom.set(xlabel=f"predicted probability ({n_bins} equal-width bins)", ylabel="examples")
    return fig
