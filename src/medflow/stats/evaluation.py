"""Test-set evaluation: bootstrap CIs, per-class tables, seed aggregates, figures, predictions.

Pure functions and figure builders; logging runs to MLflow and the CLI live elsewhere.
Figures are built on ``matplotlib.figure.Figure`` directly (not pyplot), so they render
headless with Agg, need no ``plt.close`` and never pile up in pyplot's global registry.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.metrics import (
    confusion_matrix,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from medflow.runtime.io import atomic_write_bytes
from medflow.stats.metrics import compute_metrics, predictions

log = logging.getLogger(__name__)

TASKS = ("binary", "multiclass", "multilabel", "regression")
# Bootstrap weight matrices are processed in chunks of at most this many cells (~16 MB each).
_CHUNK_CELLS = 2_000_000


# --------------------------------------------------------------------------- inputs


def _normalise(task: str, y: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Coerce to the shapes compute_metrics expects and fail early on mismatches."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    y_arr, s_arr = np.asarray(y), np.asarray(scores, dtype=np.float64)
    if len(y_arr) == 0 or len(y_arr) != len(s_arr):
        raise ValueError(f"need as many scores as labels (>0); got {len(y_arr)} and {len(s_arr)}")
    if task == "regression":
        return y_arr.astype(np.float64), s_arr.reshape(y_arr.shape)
    if task == "multilabel":
        if y_arr.ndim != 2 or s_arr.shape != y_arr.shape:
            raise ValueError(
                f"multilabel needs y and scores (N, L); got {y_arr.shape}, {s_arr.shape}"
            )
        return y_arr.astype(np.int64), s_arr
    y_arr = y_arr.reshape(-1).astype(np.int64)
    if task == "binary":
        s_arr = s_arr.reshape(-1)
        if len(s_arr) != len(y_arr):
            raise ValueError("binary scores must be P(y=1), one per example")
        n_classes = 2
    else:
        if s_arr.ndim != 2:
            raise ValueError(f"multiclass scores must be (N, K); got {s_arr.shape}")
        n_classes = s_arr.shape[1]
    if y_arr.min() < 0 or y_arr.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}); got {y_arr.min()}..{y_arr.max()}")
    return y_arr, s_arr


def _n_outputs(task: str, scores: np.ndarray) -> int:
    return 2 if task == "binary" else scores.shape[1]


def _names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [str(k) for k in range(count)]
    if len(names) != count:
        raise ValueError(f"expected {count} class names, got {len(names)}")
    return [str(n) for n in names]


def _one_vs_rest(task: str, y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth, score) columns per class or label: the binary problems ROC curves are drawn for."""
    if task == "multilabel":
        return y.astype(bool), scores
    if task == "binary":
        return np.column_stack([y == 0, y == 1]), np.column_stack([1 - scores, scores])
    return y[:, None] == np.arange(scores.shape[1]), scores


# --------------------------------------------------------------------------- bootstrap


def _weighted_auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of one binary problem for each row of bootstrap counts ``weights`` (B, N).

    Mann-Whitney U with ties counted one half, which equals sklearn's trapezoidal ROC AUC;
    NaN where a resample lacks one of the two classes (undefined, not zero).
    """
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])  # tie groups
    w = weights[:, order]
    is_pos = positive[order]
    pos = np.add.reduceat(np.where(is_pos, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(is_pos, 0.0, w), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    u = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    defined = (n_pos > 0) & (n_neg > 0)
    return np.where(defined, u / np.where(defined, n_pos * n_neg, 1.0), np.nan)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return num / np.where(den > 0, den, 1.0)


def _single_label_metrics(
    task: str, y: np.ndarray, scores: np.ndarray, w: np.ndarray
) -> dict[str, np.ndarray]:
    """compute_metrics for binary/multiclass on every resample at once, from class counts."""
    n_classes = _n_outputs(task, scores)
    eye = np.eye(n_classes)
    y_hot, p_hot = eye[y], eye[predictions(task, scores)]
    true, pred, tp = w @ y_hot, w @ p_hot, w @ (y_hot * p_hot)
    n = w.sum(axis=1)
    present = true > 0  # sklearn's balanced accuracy averages recall over classes in y_true
    union = (true + pred) > 0  # ... and macro F1 over classes in y_true or y_pred
    truth, cols = _one_vs_rest(task, y, scores)
    columns = [1] if task == "binary" else range(n_classes)  # binary AUC: P(y=1) column only
    aucs = np.column_stack([_weighted_auc(w, truth[:, k], cols[:, k]) for k in columns])
    return {
        "accuracy": tp.sum(axis=1) / n,
        "balanced_accuracy": (_safe_ratio(tp, true) * present).sum(axis=1) / present.sum(axis=1),
        "auc": aucs.mean(axis=1),  # OvR macro: NaN if any class is absent, as sklearn
        "f1": (_safe_ratio(2 * tp, true + pred) * union).sum(axis=1) / union.sum(axis=1),
    }


def _multilabel_metrics(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """compute_metrics for multilabel on every resample at once (per-label means, as MedMNIST)."""
    truth = y.astype(np.float64)
    pred = predictions("multilabel", scores).astype(np.float64)
    n = w.sum(axis=1, keepdims=True)
    tp, tn = w @ (truth * pred), w @ ((1 - truth) * (1 - pred))
    pos, pred_pos = w @ truth, w @ pred
    neg = n - pos
    # balanced accuracy of one label averages TPR and TNR over the classes present
    has_pos, has_neg = pos > 0, neg > 0
    bal = (_safe_ratio(tp, pos) * has_pos + _safe_ratio(tn, neg) * has_neg) / (
        has_pos.astype(np.float64) + has_neg
    )
    aucs = np.column_stack(
        [_weighted_auc(w, y[:, j] == 1, scores[:, j]) for j in range(y.shape[1])]
    )
    n_defined = np.isfinite(aucs).sum(axis=1)
    auc = np.where(n_defined > 0, np.nansum(aucs, axis=1) / np.maximum(n_defined, 1), np.nan)
    return {
        "accuracy": (tp + tn).sum(axis=1) / (n[:, 0] * y.shape[1]),
        "balanced_accuracy": bal.mean(axis=1),
        "auc": auc,
        "f1": _safe_ratio(2 * tp, pos + pred_pos).mean(axis=1),  # zero_division=0
    }


def _regression_metrics(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """mse and r2 (uniform over outputs, sklearn's force_finite rule) on every resample."""
    y2, s2 = y.reshape(len(y), -1), scores.reshape(len(y), -1)
    n = w.sum(axis=1, keepdims=True)
    ss_res = w @ (y2 - s2) ** 2
    centred = y2 - y2.mean(axis=0)  # centring first limits cancellation in ss_tot
    sum_y, sum_y2 = w @ centred, w @ centred**2
    ss_tot = sum_y2 - sum_y**2 / n
    constant = ss_tot <= 1e-12 * np.maximum(sum_y2, 1e-300)
    r2 = np.where(
        constant, np.where(ss_res == 0, 1.0, 0.0), 1 - ss_res / np.where(constant, 1, ss_tot)
    )
    return {"mse": ss_res.sum(axis=1) / (n[:, 0] * y2.shape[1]), "r2": r2.mean(axis=1)}


def resampled_metrics(
    task: str, y: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """compute_metrics for each row of ``weights`` (B, N): how often each example was drawn.

    Vectorised equivalent of ``compute_metrics(task, y[idx], scores[idx])`` per resample,
    except that multiclass AUC does not check that scores sum to 1 (bootstrap_metrics
    reports a NaN CI wherever the full-set value is NaN).
    """
    y, scores = _normalise(task, y, scores)
    w = np.asarray(weights, dtype=np.float64)
    if task == "regression":
        return _regression_metrics(y, scores, w)
    if task == "multilabel":
        return _multilabel_metrics(y, scores, w)
    return _single_label_metrics(task, y, scores, w)


def _bootstrap_weights(rng: np.random.Generator, n_rows: int, n_draws: int) -> np.ndarray:
    """(n_draws, n_rows) counts: each row a resample of n_rows examples with replacement."""
    idx = rng.integers(0, n_rows, size=(n_draws, n_rows))
    flat = (idx + np.arange(n_draws)[:, None] * n_rows).ravel()
    return np.bincount(flat, minlength=n_draws * n_rows).reshape(n_draws, n_rows).astype(float)


def bootstrap_metrics(
    task: str,
    y: ArrayLike,
    scores: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Point estimate and percentile-bootstrap CI for every metric of compute_metrics.

    Rows are resampled with replacement, ``n_boot`` times, from ``default_rng(seed)``.
    Resamples where a metric is undefined (AUC with a class missing) are skipped, not
    counted as zero; ``n_skipped`` says how many. A metric whose full-set value is NaN
    gets a NaN CI (``write_json_atomic`` refuses NaN: callers must handle it).
    Returns metric -> {"value", "ci_low", "ci_high", "n_skipped"}.
    """
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1; got {n_boot}, {alpha}")
    y_arr, s_arr = _normalise(task, y, scores)
    point = compute_metrics(task, y_arr, s_arr)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_CELLS // len(y_arr)))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in point}
    for start in range(0, n_boot, chunk):
        weights = _bootstrap_weights(rng, len(y_arr), min(chunk, n_boot - start))
        for name, values in resampled_metrics(task, y_arr, s_arr, weights).items():
            parts[name].append(values)
    out: dict[str, dict[str, float]] = {}
    for name, value in point.items():
        draws = np.concatenate(parts[name])
        valid = draws[np.isfinite(draws)] if math.isfinite(value) else draws[:0]
        skipped = n_boot - len(valid)
        if skipped:
            log.log(
                logging.WARNING if skipped > 0.05 * n_boot else logging.INFO,
                "%s undefined in %d of %d bootstrap resamples; skipped",
                name,
                skipped,
                n_boot,
            )
        low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2]) if len(valid) else (np.nan,) * 2
        out[name] = {
            "value": float(value),
            "ci_low": float(low),
            "ci_high": float(high),
            "n_skipped": skipped,
        }
    return out


# --------------------------------------------------------------------------- per class


def _binary_auc(truth: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(truth, score)) if len(np.unique(truth)) == 2 else math.nan


def per_class_metrics(
    task: str, y: ArrayLike, scores: ArrayLike, class_names: Sequence[str] | None = None
) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1, support and one-vs-rest AUC (NaN if undefined) per class/label."""
    if task == "regression":
        raise ValueError("per-class metrics need a classification task")
    y_arr, s_arr = _normalise(task, y, scores)
    pred = predictions(task, s_arr)
    n_out = _n_outputs(task, s_arr)
    labels = None if task == "multilabel" else np.arange(n_out)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_arr, pred, labels=labels, average=None, zero_division=0
    )
    truth, cols = _one_vs_rest(task, y_arr, s_arr)
    return [
        {
            "class": name,
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "auc": _binary_auc(truth[:, k], cols[:, k]),
        }
        for k, name in enumerate(_names(class_names, n_out))
    ]


# --------------------------------------------------------------------------- over seeds


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[np.isfinite(arr)]


def _t_interval(mean: float, se: float, dof: int, alpha: float) -> tuple[float, float]:
    if dof < 1 or se == 0:  # one value (or identical ones): the interval collapses, no NaN
        return mean, mean
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    return mean - half, mean + half


def aggregate_over_seeds(values: Sequence[float], alpha: float = 0.05) -> dict[str, float]:
    """Mean, sample SD and t-distribution CI of one metric over seeds.

    Non-finite values (failed metric) are dropped; ``n`` counts those used. With n=1 the
    SD is 0 and the CI is [value, value] so reports stay NaN-free: a single seed gives no
    spread estimate, and ``n`` makes that visible. n=0 gives NaN statistics.
    """
    arr = _finite(values)
    if len(arr) == 0:
        return {"mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    low, high = _t_interval(mean, sd / math.sqrt(len(arr)), len(arr) - 1, alpha)
    return {"mean": mean, "sd": sd, "ci_low": low, "ci_high": high, "n": len(arr)}


def _welch_interval(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[float, float]:
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, diff
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * math.sqrt(va + vb)
    return diff - half, diff + half


def paired_difference(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05
) -> dict[str, float]:
    """Mean of a_i - b_i over matched seeds with a paired t CI (e.g. finetune - scratch).

    Pairs with a non-finite member are dropped. ``unpaired_*`` give the difference of
    means with a Welch CI for reference: pairing removes seed-to-seed variance shared by
    both arms, so its CI is usually the narrower one.
    """
    a_arr = np.asarray(a, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal lengths; got {len(a_arr)} and {len(b_arr)}")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    a_arr, b_arr = a_arr[keep], b_arr[keep]
    out: dict[str, float] = aggregate_over_seeds(a_arr - b_arr, alpha)
    if len(a_arr):
        low, high = _welch_interval(a_arr, b_arr, alpha)
        unpaired = float(a_arr.mean() - b_arr.mean())
    else:
        low = high = unpaired = math.nan
    out.update(unpaired_mean=unpaired, unpaired_ci_low=low, unpaired_ci_high=high)
    return out


def summarize_modes(
    per_seed: Mapping[str, Mapping[int, Mapping[str, float]]],
    alpha: float = 0.05,
    treated: str = "finetune",
    baseline: str = "scratch",
) -> dict[str, dict[str, dict[str, float]]]:
    """mode -> metric -> aggregate_over_seeds, plus "transfer_gain" -> metric -> paired diff.

    The gain is ``treated - baseline`` paired over the seeds both modes ran, for metrics
    both report; it is present only when both modes share at least one seed.
    """
    if "transfer_gain" in per_seed:
        raise ValueError("'transfer_gain' is reserved and cannot be a mode name")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode, runs in per_seed.items():
        metric_names = sorted({m for metrics in runs.values() for m in metrics})
        out[mode] = {
            m: aggregate_over_seeds([runs[s].get(m, math.nan) for s in sorted(runs)], alpha)
            for m in metric_names
        }
    if treated in per_seed and baseline in per_seed:
        treated_runs, baseline_runs = per_seed[treated], per_seed[baseline]
        seeds = sorted(set(treated_runs) & set(baseline_runs))
        shared = sorted(set(out[treated]) & set(out[baseline]))
        if seeds:
            out["transfer_gain"] = {
                m: paired_difference(
                    [treated_runs[s].get(m, math.nan) for s in seeds],
                    [baseline_runs[s].get(m, math.nan) for s in seeds],
                    alpha,
                )
                for m in shared
            }
    return out


# --------------------------------------------------------------------------- figures


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


def _multilabel_confusion_figure(y: np.ndarray, pred: np.ndarray, names: list[str]) -> Figure:
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
    fig.suptitle("Per-label confusion (threshold 0.5)")
    return fig


def confusion_figure(
    task: str, y: ArrayLike, scores: ArrayLike, class_names: Sequence[str] | None = None
) -> Figure:
    """Row-normalised confusion matrix with counts; multilabel: one 2x2 matrix per label."""
    if task == "regression":
        raise ValueError("a confusion matrix needs a classification task")
    y_arr, s_arr = _normalise(task, y, scores)
    pred = predictions(task, s_arr)
    names = _names(class_names, _n_outputs(task, s_arr))
    if task == "multilabel":
        return _multilabel_confusion_figure(y_arr, pred, names)
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
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised)")
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
    y_arr, s_arr = _normalise(task, y, scores)
    names = _names(class_names, _n_outputs(task, s_arr))
    truth, cols = _one_vs_rest(task, y_arr, s_arr)
    columns = [1] if task == "binary" else range(len(names))
    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = fig.subplots()
    curves, skipped = [], []
    for k in columns:
        if len(np.unique(truth[:, k])) < 2:
            skipped.append(names[k])
            continue
        fpr, tpr, _ = roc_curve(truth[:, k], cols[:, k])
        auc = _binary_auc(truth[:, k], cols[:, k])
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


# --------------------------------------------------------------------------- predictions


def _infer_task(y: np.ndarray, scores: np.ndarray) -> str:
    if y.ndim == 2 and y.shape[1] > 1:
        return "multilabel"
    if scores.ndim == 2 and scores.shape[1] > 1:
        return "multiclass"
    binary_y = np.isin(y, (0, 1)).all()
    return "binary" if binary_y and ((scores >= 0) & (scores <= 1)).all() else "regression"


def save_predictions(
    path: str | os.PathLike[str],
    y: ArrayLike,
    scores: ArrayLike,
    index: ArrayLike | None = None,
    *,
    task: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write one CSV row per example, atomically: index, y, score(s), pred.

    Columns: ``index``; ``y`` (or ``y_<label>`` for multilabel); ``score`` for 1-D scores
    (binary P(y=1), regression) or ``score_<k>`` per column; ``pred`` (or ``pred_<label>``).
    ``task`` is inferred from the shapes when not given (0/1 labels with scores in [0, 1]
    read as binary); ``label_names`` replace the column suffixes ``<k>``.
    """
    y_arr, s_arr = np.asarray(y), np.asarray(scores, dtype=np.float64)
    task = task or _infer_task(y_arr, s_arr)
    y_arr, s_arr = _normalise(task, y_arr, s_arr)
    idx = np.arange(len(y_arr)) if index is None else np.asarray(index).reshape(-1)
    if len(idx) != len(y_arr):
        raise ValueError(f"index has {len(idx)} entries for {len(y_arr)} examples")
    pred = predictions(task, s_arr)
    columns: dict[str, np.ndarray] = {"index": idx}
    if task == "multilabel" or (task == "regression" and y_arr.ndim == 2 and y_arr.shape[1] > 1):
        names = _names(label_names, y_arr.shape[1])
        for key, values in (("y", y_arr), ("score", s_arr), ("pred", pred)):
            columns.update({f"{key}_{n}": values[:, j] for j, n in enumerate(names)})
    else:
        columns["y"] = y_arr.reshape(-1)
        if s_arr.ndim == 2 and s_arr.shape[1] > 1:
            names = _names(label_names, s_arr.shape[1])
            columns.update({f"score_{n}": s_arr[:, k] for k, n in enumerate(names)})
        else:
            columns["score"] = s_arr.reshape(-1)
        columns["pred"] = pred.reshape(-1)
    buffer = io.StringIO()
    pd.DataFrame(columns).to_csv(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
