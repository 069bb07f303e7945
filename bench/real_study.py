"""A real-size study through ``snakemake``: the shipped MedMNIST config on generated files.

``config/medmnist.yaml``'s breastmnist study as shipped (every epoch, trial and seed), its
OrganAMNIST source replaced by a generated file of DermaMNIST's size (7,007/1,003/2,005
images at 28x28; greyscale, as the target needs) and BreastMNIST at its own size
(546/78/156). The files have MedMNIST's keys, dtypes and shapes and a learnable class
signal (tests.medmnist_files). Reported: wall time over the training recorded in MLflow
(goal <= 1.15), seconds per epoch per stage, training images/s, and the peak resident
memory of the largest job (goal < 4 GiB), read from ``getrusage(RUSAGE_CHILDREN)`` of a
process that only runs ``snakemake``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from bench.common import Options, row, write_json
from bench.workflow_overhead import (
    BIN,
    PROFILE,
    REPO,
    job_seconds_by_rule,
    recorded_training_seconds,
)
from medflow.config.load import load_config
from tests.medmnist_files import write_medmnist_flag

GOAL = "<= 1.15"
MEMORY_GOAL_GIB = 4.0
DERMAMNIST_SPLITS = {"train": 7007, "val": 1003, "test": 2005}
STUDY = "breastmnist"

# Runs snakemake as its only child, then prints the largest descendant's peak RSS (KiB).
_RUNNER = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
wall = time.perf_counter() - started
print(code, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def study_config(root: Path) -> dict[str, Any]:
    """config/medmnist.yaml with its breastmnist study only, reading files under ``root``."""
    shipped = yaml.safe_load((REPO / "config" / "medmnist.yaml").read_text())
    datasets = {name: shipped["datasets"][name] for name in ("organamnist", STUDY)}
    for section in datasets.values():
        section["options"]["root"] = str(root)
    study = shipped["studies"][STUDY]
    return {"datasets": datasets, "studies": {STUDY: study}}


def per_epoch_seconds(results: Path) -> dict[str, Any]:
    """Median epoch seconds and summed training images per stage, from the MLflow store."""
    from medflow.tracking.client import Tracker

    client = Tracker.for_results(results).client
    epochs: dict[str, list[float]] = defaultdict(list)
    images: dict[str, float] = defaultdict(float)
    for experiment in client.search_experiments():
        for found in client.search_runs([experiment.experiment_id], max_results=10000):
            stage = found.data.tags.get("stage", "?")
            times = client.get_metric_history(found.info.run_id, "epoch_time_s")
            rates = client.get_metric_history(found.info.run_id, "samples_per_s")
            epochs[stage] += [m.value for m in times]
            images[stage] += sum(t.value * r.value for t, r in zip(times, rates, strict=True))
    return {
        "epoch_s_median": {stage: statistics.median(v) for stage, v in epochs.items() if v},
        "epochs": {stage: len(v) for stage, v in epochs.items()},
        "train_images": dict(images),
    }


def bench(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medflow-bench-real-") as tmp:
        workdir = Path(tmp)
        data = workdir / "data"
        write_medmnist_flag(data, "organamnist", n_samples=DERMAMNIST_SPLITS)
        write_medmnist_flag(data, STUDY)
        config = workdir / "real_study.yaml"
        config.write_text(yaml.safe_dump(study_config(data)))
        load_config(config)  # the derived config is valid (all --quick checks)
        if options.quick:
            return {"quick": "config checked, files written; no workflow run"}
        command = [
            str(BIN / "snakemake"),
            *("--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)),
            *("--profile", str(PROFILE), "--configfile", str(config)),
        ]
        done = subprocess.run(
            [sys.executable, "-c", _RUNNER, *command], capture_output=True, text=True, check=True
        )
        code, wall, max_rss_kib = done.stdout.split()[-3:]
        if int(code) != 0:
            raise RuntimeError(f"real_study: snakemake failed\n{done.stderr[-3000:]}")
        (log,) = (workdir / ".snakemake" / "log").glob("*.snakemake.log")
        jobs = job_seconds_by_rule(log.read_text())
        recorded = recorded_training_seconds(workdir / "results")
        epochs = per_epoch_seconds(workdir / "results")
        metrics = json.loads((workdir / "results/evaluate" / STUDY / "metrics.json").read_text())
    train_s = recorded["train_seconds"]
    return {
        "config": f"config/medmnist.yaml, study {STUDY} as shipped",
        "data": {"source": {"flag": "organamnist", **DERMAMNIST_SPLITS}, "target": STUDY},
        "wall_s": float(wall),
        "recorded_training": recorded,
        "ratio_wall_over_training": float(wall) / train_s,
        "job_seconds_by_rule": jobs,
        "peak_rss_largest_job_gib": int(max_rss_kib) / 2**20,
        "images_per_s": sum(epochs["train_images"].values()) / train_s,
        **epochs,
        "test_summary": metrics["summary"],
    }


def run(options: Options) -> list[dict[str, Any]]:
    result = bench(options)
    write_json("real_study", result, options)
    if options.quick:
        return [row("real study: medmnist.yaml breastmnist, wall / training", None, GOAL, "quick")]
    epoch = result["epoch_s_median"]
    rss = result["peak_rss_largest_job_gib"]
    return [
        row(
            "real study: medmnist.yaml breastmnist, wall / recorded training",
            result["ratio_wall_over_training"],
            GOAL,
            f"{result['wall_s']:.0f} s wall, {result['recorded_training']['train_seconds']:.0f} s "
            f"training; {result['images_per_s']:.0f} img/s; s/epoch: "
            + ", ".join(f"{stage} {s:.2f}" for stage, s in sorted(epoch.items()))
            + f"; largest job's peak RSS {rss:.2f} GiB (goal < {MEMORY_GOAL_GIB:g})",
        )
    ]
