"""Calibration of predicted probabilities: Brier score, expected calibration error (ECE)
on equal-width bins, and temperature scaling fitted on the validation split.

What is calibrated: binary P(class 1); multi-class the top-label confidence (max
probability) against being correct, and the multi-class Brier (sum over classes);
multi-label each label's probability (ECE and Brier averaged over labels). Bins follow
sklearn's calibration_curve(strategy="uniform"), so the reliability diagram and the ECE
use the same bins.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit, softmax

_EPS = 1e-7
CALIBRATIONS = ("none", "temperature")


def calibration_pairs(
    task: str, y: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(probability, outcome) columns (N, L) whose agreement calibration measures."""
    if task == "binary":
        return scores[:, None], (y == 1)[:, None].astype(np.float64)
    if task == "multiclass":
        top = scores.argmax(axis=1)
        return scores.max(axis=1)[:, None], (top == y)[:, None].astype(np.float64)
    return scores, y.astype(np.float64)


def brier_terms(task: str, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N,) each example's squared error; their mean is the Brier score."""
    if task == "binary":
        return (scores - (y == 1)) ** 2
    if task == "multiclass":
        return ((scores - np.eye(scores.shape[1])[y]) ** 2).sum(axis=1)
    return ((scores - y) ** 2).mean(axis=1)


def bin_ids(prob: np.ndarray, n_bins: int) -> np.ndarray:
    """calibration_curve's uniform bins: [0, 1/n], (1/n, 2/n], ..., ((n-1)/n, 1]."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], prob)


def calibration_metrics(
    task: str, y: np.ndarray, scores: np.ndarray, w: np.ndarray, n_bins: int
) -> dict[str, np.ndarray]:
    """brier and ece for each row of bootstrap counts ``w`` (B, N)."""
    n = w.sum(axis=1)
    brier = (w @ brier_terms(task, y, scores)) / n
    prob, outcome = calibration_pairs(task, y, scores)
    eces = []
    for j in range(prob.shape[1]):
        onehot = np.eye(n_bins)[bin_ids(prob[:, j], n_bins)]
        gap = w @ (onehot * (prob[:, j] - outcome[:, j])[:, None])  # (B, bins) summed gaps
        eces.append(np.abs(gap).sum(axis=1) / n)
    return {"brier": brier, "ece": np.mean(eces, axis=0)}


def _logits(task: str, scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, _EPS, 1 - _EPS)
    return np.log(clipped) if task == "multiclass" else logit(clipped)


def apply_temperature(task: str, scores: np.ndarray, temperature: float) -> np.ndarray:
    """Scores with their logits divided by ``temperature`` (ranks and arg-max unchanged)."""
    z = _logits(task, scores) / temperature
    return softmax(z, axis=1) if task == "multiclass" else expit(z)


def _nll(task: str, y: np.ndarray, logits: np.ndarray) -> float:
    if task == "multiclass":
        return float(-log_softmax(logits, axis=1)[np.arange(len(y)), y].mean())
    t = (y == 1).astype(np.float64) if task == "binary" else y.astype(np.float64)
    # log(1 + e^z) - t z, stable for large |z|
    return float((np.logaddexp(0.0, logits) - t * logits).mean())


def fit_temperature(task: str, y_val: np.ndarray, s_val: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the validation negative log-likelihood."""
    z = _logits(task, s_val)
    result = minimize_scalar(
        lambda log_t: _nll(task, y_val, z / np.exp(log_t)),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))
