"""Hierarchical bootstrap over test examples and seeds: 95% intervals that carry both the
test-set sampling and the seed-to-seed variation of a training recipe.

One replicate resamples the N test examples with replacement (one row of draw counts, the
same for every mode and seed, so comparisons between modes stay paired) and then the seeds
with replacement (the same seed positions for both arms of a paired gain); its value is
the mean over the drawn seeds of each seed's metric on the drawn examples. The interval is
the 2.5-97.5 percentile of the replicates; the point estimate is the mean over seeds on
the whole test split (as before). A seeds-only t-interval ignores the first level and
collapses when seeds agree on the same test examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

# A run's metrics for each row of bootstrap counts (B, N): name -> (B,) values.
Stat = Callable[[np.ndarray], Mapping[str, np.ndarray]]
# Bootstrap weight matrices are processed in chunks of at most this many cells (~16 MB each).
_CHUNK_CELLS = 2_000_000

METHOD = (
    "hierarchical percentile bootstrap: test examples resampled with replacement (one "
    "resample shared by every mode and seed, so comparisons are paired), then seeds "
    "resampled with replacement; 95% interval = 2.5th-97.5th percentile of the mean over "
    "the drawn seeds"
)


def example_weights(rng: np.random.Generator, n_rows: int, n_draws: int) -> np.ndarray:
    """(n_draws, n_rows) counts: each row one resample of n_rows examples with replacement."""
    idx = rng.integers(0, n_rows, size=(n_draws, n_rows))
    flat = (idx + np.arange(n_draws)[:, None] * n_rows).ravel()
    return np.bincount(flat, minlength=n_draws * n_rows).reshape(n_draws, n_rows).astype(float)


def resample_runs(
    runs: Mapping[str, Stat], n_rows: int, n_boot: int, rng: np.random.Generator
) -> dict[str, dict[str, np.ndarray]]:
    """run key -> metric -> (n_boot,) values, every run scored on the same example resamples."""
    chunk = max(1, min(n_boot, _CHUNK_CELLS // max(n_rows, 1)))
    parts: dict[str, dict[str, list[np.ndarray]]] = {key: {} for key in runs}
    for start in range(0, n_boot, chunk):
        weights = example_weights(rng, n_rows, min(chunk, n_boot - start))
        for key, stat in runs.items():
            for name, values in stat(weights).items():
                parts[key].setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {
        key: {m: np.concatenate(v) for m, v in metrics.items()} for key, metrics in parts.items()
    }


def seed_draws(rng: np.random.Generator, n_seeds: int, n_boot: int) -> np.ndarray:
    """(n_boot, n_seeds) positions of the seeds drawn with replacement in each replicate."""
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def replicate_means(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(n_boot,) mean over the drawn seeds; ``per_seed`` is (n_seeds, n_boot), NaN if undefined."""
    picked = per_seed[draws, np.arange(per_seed.shape[1])[:, None]]
    finite = np.isfinite(picked)
    count = finite.sum(axis=1)
    total = np.where(finite, picked, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def interval(
    point: Sequence[float], replicates: np.ndarray, alpha: float = 0.05
) -> dict[str, float]:
    """mean (over seeds, full test split), sd over seeds, percentile CI of the replicates, n."""
    values = np.asarray(point, dtype=np.float64)
    values = values[np.isfinite(values)]
    valid = replicates[np.isfinite(replicates)]
    if len(values) == 0 or len(valid) == 0:
        return {"mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "ci_low": float(low),
        "ci_high": float(high),
        "n": len(values),
    }


def hierarchical_summary(
    point: Mapping[int, Mapping[str, float]],
    replicates: Mapping[int, Mapping[str, np.ndarray]],
    draws: np.ndarray,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """metric -> interval for one mode from its seeds' full-set values and replicate values."""
    seeds = sorted(point)
    names = sorted({m for s in seeds for m in point[s]})
    out = {}
    for name in names:
        per_seed = np.stack([replicates[s].get(name, _nan_like(draws)) for s in seeds])
        out[name] = interval(
            [point[s].get(name, math.nan) for s in seeds],
            replicate_means(per_seed, draws),
            alpha,
        )
    return out


def paired_gain(
    point: tuple[Mapping[int, Mapping[str, float]], Mapping[int, Mapping[str, float]]],
    replicates: tuple[
        Mapping[int, Mapping[str, np.ndarray]], Mapping[int, Mapping[str, np.ndarray]]
    ],
    draws: np.ndarray,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """treated - baseline per metric, paired by seed and by test resample, over the seeds both
    arms ran (``draws`` has one column per shared seed)."""
    (pa, pb), (ra, rb) = point, replicates
    seeds = sorted(set(pa) & set(pb))
    names = sorted({m for s in seeds for m in pa[s]} & {m for s in seeds for m in pb[s]})
    diff_point = {
        s: {m: pa[s].get(m, math.nan) - pb[s].get(m, math.nan) for m in names} for s in seeds
    }
    diff_reps = {
        s: {m: ra[s].get(m, _nan_like(draws)) - rb[s].get(m, _nan_like(draws)) for m in names}
        for s in seeds
    }
    return hierarchical_summary(diff_point, diff_reps, draws, alpha)


def _nan_like(draws: np.ndarray) -> np.ndarray:
    return np.full(draws.shape[0], np.nan)
