"""Each mode's test metrics with hierarchical-bootstrap intervals (medflow.stats.hierarchical),
the rates at the validation-chosen operating point, calibration, the paired gains and the
DeLong comparisons between modes: the tables a clinical reviewer asks for."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from medflow.stats.calibration import calibration_metrics
from medflow.stats.counted import resampled_metrics
from medflow.stats.delong import delong_test
from medflow.stats.hierarchical import (
    hierarchical_summary,
    paired_gain,
    resample_runs,
    seed_draws,
)
from medflow.stats.intervals import aggregate_over_seeds, metric_bounds, paired_difference
from medflow.stats.operating_point import operating_metrics
from medflow.stats.scores import one_vs_rest

# (treated, baseline) pairs compared on AUC; the first is the headline transfer gain.
COMPARISONS = (("finetune", "scratch"), ("finetune", "linear_probe"))
PER_CLASS = "class/"


@dataclass(frozen=True)
class ScoredRun:
    """One refine run's test scores, its frozen thresholds (None: arg-max) and, with
    temperature scaling, its calibrated test scores."""

    mode: str
    seed: int
    scores: np.ndarray
    thresholds: list[float] | None
    calibrated: np.ndarray | None = None


def _run_metrics(task: str, y: np.ndarray, run: ScoredRun, n_bins: int, w: np.ndarray) -> dict:
    out = dict(resampled_metrics(task, y, run.scores, w))
    if task == "regression":
        return out
    out.update(operating_metrics(task, y, run.scores, run.thresholds, w))
    out.update(calibration_metrics(task, y, run.scores, w, n_bins))
    if run.calibrated is not None:
        after = calibration_metrics(task, y, run.calibrated, w, n_bins)
        out.update({f"{name}_calibrated": v for name, v in after.items()})
    return out


@dataclass(frozen=True)
class Intervals:
    """Full-set values and replicates per mode and seed, and the replicates' seed draws."""

    point: dict[str, dict[int, dict[str, float]]]
    replicates: dict[str, dict[int, dict[str, np.ndarray]]]
    rng: np.random.Generator
    n_boot: int
    alpha: float

    def mode(self, mode: str) -> dict[str, dict[str, float]]:
        draws = seed_draws(self.rng, len(self.point[mode]), self.n_boot)
        out = hierarchical_summary(self.point[mode], self.replicates[mode], draws, self.alpha)
        for name, stats in out.items():  # today's seeds-only t-interval, for reference
            seeds_only = aggregate_over_seeds(
                [self.point[mode][s].get(name, math.nan) for s in sorted(self.point[mode])],
                self.alpha,
                metric_bounds(name),
            )
            stats["seeds_ci_low"], stats["seeds_ci_high"] = (
                seeds_only["ci_low"],
                seeds_only["ci_high"],
            )
        return out

    def gain(self, treated: str, baseline: str) -> dict[str, dict[str, float]]:
        shared = set(self.point[treated]) & set(self.point[baseline])
        draws = seed_draws(self.rng, len(shared), self.n_boot)
        seeds = sorted(shared)
        a, b = self.point[treated], self.point[baseline]
        out = paired_gain(
            ({s: a[s] for s in seeds}, {s: b[s] for s in seeds}),
            (
                {s: self.replicates[treated][s] for s in seeds},
                {s: self.replicates[baseline][s] for s in seeds},
            ),
            draws,
            self.alpha,
        )
        for name, stats in out.items():  # today's paired t-interval over seeds, for reference
            seeds_only = paired_difference(
                [a[s].get(name, math.nan) for s in seeds],
                [b[s].get(name, math.nan) for s in seeds],
                self.alpha,
                metric_bounds(name),
            )
            stats["seeds_ci_low"], stats["seeds_ci_high"] = (
                seeds_only["ci_low"],
                seeds_only["ci_high"],
            )
        return out


def intervals(
    task: str,
    y: np.ndarray,
    runs: Sequence[ScoredRun],
    n_boot: int,
    seed: int = 0,
    n_bins: int = 15,
    alpha: float = 0.05,
) -> Intervals:
    """Score every run on the same ``n_boot`` test resamples from ``default_rng(seed)``."""
    stats = {(r.mode, r.seed): partial(_run_metrics, task, y, r, n_bins) for r in runs}
    rng = np.random.default_rng(seed)
    replicates = resample_runs(stats, len(y), n_boot, rng)
    ones = np.ones((1, len(y)))
    point: dict[str, dict[int, dict[str, float]]] = {}
    reps: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for (mode, s), stat in stats.items():
        point.setdefault(mode, {})[s] = {k: float(v[0]) for k, v in stat(ones).items()}
        reps.setdefault(mode, {})[s] = replicates[(mode, s)]
    return Intervals(point, reps, rng, n_boot, alpha)


def split_per_class(stats: dict[str, dict]) -> tuple[dict[str, dict], dict[int, dict[str, dict]]]:
    """(headline metrics, class index -> rate -> interval) from ``class/<k>/<rate>`` keys."""
    headline, per_class = {}, {}
    for name, value in stats.items():
        if name.startswith(PER_CLASS):
            k, rate = name.removeprefix(PER_CLASS).split("/", 1)
            per_class.setdefault(int(k), {})[rate] = value
        else:
            headline[name] = value
    return headline, dict(sorted(per_class.items()))


def _delong_columns(task: str, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[dict]:
    """DeLong per one-vs-rest problem: binary the positive class, else each class/label."""
    truth, cols_a = one_vs_rest(task, y, a)
    _, cols_b = one_vs_rest(task, y, b)
    columns = [1] if task == "binary" else range(truth.shape[1])
    return [{"column": k, **delong_test(truth[:, k], cols_a[:, k], cols_b[:, k])} for k in columns]


def delong_comparison(
    task: str, y: np.ndarray, by_seed_a: dict[int, np.ndarray], by_seed_b: dict[int, np.ndarray]
) -> dict:
    """DeLong per matched seed. Binary: the AUC of P(class 1). Multi-class/-label: each
    class's one-vs-rest AUC, the seed's p the Bonferroni-adjusted smallest (any class
    differs). ``p_value`` is the largest over seeds: significant only if every seed pair is."""
    per_seed = []
    for seed in sorted(set(by_seed_a) & set(by_seed_b)):
        tests = _delong_columns(task, y, by_seed_a[seed], by_seed_b[seed])
        ps = [t["p_value"] for t in tests if math.isfinite(t["p_value"])]
        p = min(1.0, len(ps) * min(ps)) if ps else math.nan
        entry = {"seed": seed, "p_value": p}
        if task == "binary":
            entry.update({k: tests[0][k] for k in ("auc_a", "auc_b", "diff", "z")})
        else:
            entry["per_class_p"] = [t["p_value"] for t in tests]
        per_seed.append(entry)
    finite = [e["p_value"] for e in per_seed if math.isfinite(e["p_value"])]
    return {"per_seed": per_seed, "p_value": max(finite) if finite else None}
