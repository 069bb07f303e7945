"""DeLong's test for the difference of two correlated ROC AUCs (two models scored on the
same examples), in the fast midrank form of Sun & Xu (2014), IEEE SPL 21(11):1389-1393.

scipy and scikit-learn have no DeLong test; this follows pROC's roc.test(method="delong")
(the tests check it against pROC where R is installed).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, rankdata


def _placements(positive: np.ndarray, negative: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the structural components V10 (per positive) and V01 (per negative)."""
    m, n = len(positive), len(negative)
    both = rankdata(np.concatenate([positive, negative]))  # midranks: ties count one half
    rank_pos, rank_neg = rankdata(positive), rankdata(negative)
    v10 = (both[:m] - rank_pos) / n  # share of negatives below each positive
    v01 = 1.0 - (both[m:] - rank_neg) / m  # share of positives above each negative
    return float(v10.mean()), v10, v01


def delong_test(truth: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """Two-sided DeLong test of AUC(a) = AUC(b) for one binary problem.

    Higher scores mean the positive class. Returns auc_a, auc_b, diff (a - b), se, z,
    p_value; NaN statistics where a class is absent, z = 0 and p = 1 where the AUCs and
    their variance are both zero (identical rankings).
    """
    truth = np.asarray(truth).astype(bool).reshape(-1)
    a, b = np.asarray(score_a, float).reshape(-1), np.asarray(score_b, float).reshape(-1)
    m, n = int(truth.sum()), int((~truth).sum())
    if m == 0 or n == 0:
        nan = math.nan
        return {"auc_a": nan, "auc_b": nan, "diff": nan, "se": nan, "z": nan, "p_value": nan}
    auc_a, v10_a, v01_a = _placements(a[truth], a[~truth])
    auc_b, v10_b, v01_b = _placements(b[truth], b[~truth])
    s10 = np.cov(np.vstack([v10_a, v10_b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_a, v01_b])) if n > 1 else np.zeros((2, 2))
    contrast = np.array([1.0, -1.0])
    var = float(contrast @ (s10 / m + s01 / n) @ contrast)
    diff = auc_a - auc_b
    if var <= 1e-300:
        z = 0.0 if abs(diff) < 1e-15 else math.copysign(math.inf, diff)
        se = 0.0
    else:
        se = math.sqrt(var)
        z = diff / se
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "diff": diff,
        "se": se,
        "z": z,
        "p_value": float(2 * norm.sf(abs(z))),
    }
