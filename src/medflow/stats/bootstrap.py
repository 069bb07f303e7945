"""Percentile-bootstrap CIs of the test metrics, computed for all resamples at once.

Each resample is a row of draw counts, so every metric of compute_metrics becomes a
weighted sum over examples (a matrix product) instead of a Python loop per resample.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.typing import ArrayLike

from medflow.stats.counted import resampled_metrics
from medflow.stats.metrics import compute_metrics
from medflow.stats.scores import check_scores

log = logging.getLogger(__name__)

# Bootstrap weight matrices are processed in chunks of at most this many cells (~16 MB each).
_CHUNK_CELLS = 2_000_000


def _bootstrap_weights(rng: np.random.Generator, n_rows: int, n_draws: int) -> np.ndarray:
    """(n_draws, n_rows) counts: each row a resample of n_rows examples with replacement."""
    idx = rng.integers(0, n_rows, size=(n_draws, n_rows))
    flat = (idx + np.arange(n_draws)[:, None] * n_rows).ravel()
    return np.bincount(flat, minlength=n_draws * n_rows).reshape(n_draws, n_rows).astype(float)


def _draws(
    task: str, y: np.ndarray, scores: np.ndarray, names: list[str], n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """Each metric's value on ``n_boot`` resamples from ``default_rng(seed)``, in chunks."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_CELLS // len(y)))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n_boot, chunk):
        weights = _bootstrap_weights(rng, len(y), min(chunk, n_boot - start))
        for name, values in resampled_metrics(task, y, scores, weights).items():
            parts[name].append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


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
    gets a NaN CI (``write_json_atomic`` writes it as null).
    Returns metric -> {"value", "ci_low", "ci_high", "n_skipped"}.
    """
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1; got {n_boot}, {alpha}")
    y_arr, s_arr = check_scores(task, y, scores)
    point = compute_metrics(task, y_arr, s_arr)
    draws = _draws(task, y_arr, s_arr, list(point), n_boot, seed)
    out: dict[str, dict[str, float]] = {}
    for name, value in point.items():
        valid = draws[name][np.isfinite(draws[name])] if math.isfinite(value) else draws[name][:0]
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
