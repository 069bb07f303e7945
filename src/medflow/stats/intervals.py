"""Spread over seeds: t-intervals of a metric's mean, and the paired (and Welch) difference
of two arms run on the same seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Metrics that live in [0, 1] (and their differences in [-1, 1]); mse/mae are >= 0.
UNIT_METRICS = frozenset(
    {"accuracy", "balanced_accuracy", "auc", "f1", "precision", "recall"}
    | {"sensitivity", "specificity", "ppv", "npv", "prevalence", "ece"}
)
NON_NEGATIVE_METRICS = frozenset({"mse", "mae", "rmse", "loss", "brier"})


def metric_bounds(name: str) -> tuple[float, float]:
    """The range a metric can take, so that a t-interval is not reported outside it."""
    base = name.removeprefix("test_").removeprefix("val_")
    if base in UNIT_METRICS:
        return 0.0, 1.0
    if base in NON_NEGATIVE_METRICS:
        return 0.0, math.inf
    return -math.inf, math.inf


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[np.isfinite(arr)]


def _t_quantile(q: float, dof: float) -> float:
    from scipy import stats  # here, not at import: sweep workers need metric_bounds only

    return float(stats.t.ppf(q, dof))


def _t_interval(mean: float, se: float, dof: int, alpha: float) -> tuple[float, float]:
    if dof < 1 or se == 0:  # one value (or identical ones): the interval collapses, no NaN
        return mean, mean
    half = _t_quantile(1 - alpha / 2, dof) * se
    return mean - half, mean + half


def aggregate_over_seeds(
    values: Sequence[float],
    alpha: float = 0.05,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> dict[str, float]:
    """Mean, sample SD and t-distribution CI of one metric over seeds.

    Non-finite values (failed metric) are dropped; ``n`` counts those used. With n=1 the
    SD is 0 and the CI is [value, value] so reports stay NaN-free: a single seed gives no
    spread estimate, and ``n`` makes that visible. n=0 gives NaN statistics. The CI is
    clipped to ``bounds`` (e.g. [0, 1] for accuracy: 2 seeds can reach below 0 otherwise).
    """
    arr = _finite(values)
    if len(arr) == 0:
        return {"mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    low, high = _t_interval(mean, sd / math.sqrt(len(arr)), len(arr) - 1, alpha)
    low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "sd": sd, "ci_low": low, "ci_high": high, "n": len(arr)}


def _welch_interval(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[float, float]:
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, diff
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = _t_quantile(1 - alpha / 2, dof) * math.sqrt(va + vb)
    return diff - half, diff + half


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = 0.05,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> dict[str, float]:
    """Mean of a_i - b_i over matched seeds with a paired t CI (e.g. finetune - scratch).

    Pairs with a non-finite member are dropped. ``unpaired_*`` give the difference of
    means with a Welch CI for reference: pairing removes seed-to-seed variance shared by
    both arms, so its CI is usually the narrower one. ``bounds`` are those of the metric
    itself: the difference is clipped to [low - high, high - low].
    """
    a_arr = np.asarray(a, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal lengths; got {len(a_arr)} and {len(b_arr)}")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    a_arr, b_arr = a_arr[keep], b_arr[keep]
    span = bounds[1] - bounds[0]
    diff_bounds = (-span, span)
    out: dict[str, float] = aggregate_over_seeds(a_arr - b_arr, alpha, diff_bounds)
    if len(a_arr):
        low, high = _welch_interval(a_arr, b_arr, alpha)
        low, high = max(low, diff_bounds[0]), min(high, diff_bounds[1])
        unpaired = float(a_arr.mean() - b_arr.mean())
    else:
        low = high = unpaired = math.nan
    out.update(unpaired_mean=unpaired, unpaired_ci_low=low, unpaired_ci_high=high)
    return out
