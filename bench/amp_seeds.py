"""Is bf16's accuracy effect bigger than a pretraining seed's? Opt-in, about 10 minutes:
``python -m bench --only amp_seeds`` (not part of ``make bench``).

``amp_accuracy`` compares one ``train.amp: auto`` run of the default config with one
float32 run, so a difference there mixes bf16's effect with the effect of one backbone
trajectory against another. This module runs the studies that ``auto`` trains partly in
bf16 on this CPU (the default config's digits and ecg) once per pretraining seed
(``pretrain.seed`` = 0 .. rounds-1) in each precision. It reports, per study and refine
mode, the paired difference auto - float32 over those seeds (mean and t 95% interval, in
points) beside the spread that the pretraining seed alone causes (the SD over seeds of the
float32 runs).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

from bench.amp_accuracy import REFINE_MODES, config_accuracy
from bench.common import Options, row, write_json
from bench.workflow_overhead import CONFIG
from medflow.ml.device import cpu_has_bf16

STUDIES = ("digits", "ecg")  # the default studies whose pretraining auto runs in bf16 here


def seeded_config(config: dict[str, Any], amp: str | bool, pretrain_seed: int) -> dict[str, Any]:
    """The default config's STUDIES with ``train.amp`` and ``pretrain.seed`` set."""
    studies = {
        name: {
            **study,
            "train": {**study.get("train", {}), "amp": amp},
            "pretrain": {**study["pretrain"], "seed": pretrain_seed},
        }
        for name, study in config["studies"].items()
        if name in STUDIES
    }
    return {**config, "studies": studies, "classics": {"enabled": False}}


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def run(options: Options) -> list[dict[str, Any]]:
    case = "bf16 CPU: auto - float32 test accuracy over pretraining seeds (points)"
    if options.quick or not cpu_has_bf16():
        why = "quick" if options.quick else "no bf16 CPU"
        write_json("amp_seeds", {"skipped": why}, options)
        return [row(case, None, None, f"skipped: {why}")]
    shipped = yaml.safe_load(CONFIG.read_text())
    seeds = list(range(options.rounds))
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"auto": [], "float32": []}
    with tempfile.TemporaryDirectory(prefix="medflow-bench-amp-seeds-") as tmp:
        for seed in seeds:  # interleaved: each seed in both precisions before the next
            for label, amp in (("auto", "auto"), ("float32", False)):
                config = seeded_config(shipped, amp, seed)
                runs[label].append(config_accuracy(config, Path(tmp) / f"{label}-{seed}"))
    summary: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for study in STUDIES:
        for mode in REFINE_MODES:
            auto = [100 * r[study][mode] for r in runs["auto"]]
            fp32 = [100 * r[study][mode] for r in runs["float32"]]
            mean, low, high = _t_interval([a - f for a, f in zip(auto, fp32, strict=True)])
            seed_sd = statistics.stdev(fp32)
            summary.setdefault(study, {})[mode] = {
                "difference_mean": mean,
                "difference_low": low,
                "difference_high": high,
                "float32_sd_over_pretrain_seeds": seed_sd,
                "auto": auto,
                "float32": fp32,
            }
            rows.append(
                row(
                    f"{case}: {study} {mode}",
                    mean,
                    None,
                    f"{len(seeds)} pretraining seeds, paired: {mean:+.1f} [{low:+.1f}, "
                    f"{high:+.1f}]; float32 SD over seeds {seed_sd:.1f}; auto "
                    + " ".join(f"{a:.1f}" for a in auto)
                    + "; float32 "
                    + " ".join(f"{f:.1f}" for f in fp32),
                )
            )
    write_json("amp_seeds", {"pretrain_seeds": seeds, "by_study": summary}, options)
    return rows
