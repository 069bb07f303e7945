"""Does bf16 on the CPU cost accuracy? The default studies' test accuracy with and without.

``workflow_overhead`` runs ``config/config.yaml`` as ``make run`` does (``train.amp: auto``:
bf16 for the CNN studies on a CPU with bf16 hardware) and records each study's mean test
accuracy per refine mode in results/bench/workflow_overhead.json. This module runs the
studies in which ``auto`` trained some run in bf16 (the precision tags of that run) once more
with ``train.amp: false`` in a fresh folder, and reports the largest difference in percentage
points (goal: within 0.5). A study that ``auto`` trained wholly in float32 (the MLP; CNNs
whose steps are below the bf16 work threshold) would give the same numbers again: it is not
rerun.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.common import Options, row, write_json
from bench.workflow_overhead import BIN, CONFIG, PROFILE, REPO, test_accuracy
from medflow.config.schema import validate_config
from medflow.ml.device import cpu_has_bf16

GOAL = "<= 0.5"
REFINE_MODES = ("finetune", "linear_probe", "scratch")


def float32_config(config: dict[str, Any], studies: list[str]) -> dict[str, Any]:
    """The default config's ``studies`` with amp: false (and no classics)."""
    kept = {
        name: {**study, "train": {**study.get("train", {}), "amp": False}}
        for name, study in config["studies"].items()
        if name in studies
    }
    return {**config, "studies": kept, "classics": {"enabled": False}}


def config_accuracy(config: dict[str, Any], workdir: Path) -> dict[str, dict[str, float]]:
    """Mean test accuracy per study and mode of ``config`` run as ``make run`` runs it, in a
    new folder ``workdir``."""
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run(
        [
            str(BIN / "snakemake"),
            *("--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)),
            *("--profile", str(PROFILE), "--configfile", str(workdir / "config.yaml")),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return test_accuracy(workdir / "results")


def run(options: Options) -> list[dict[str, Any]]:
    case = "bf16 CPU: default studies' test accuracy, |auto - float32| (points)"
    auto_json = options.out_dir / "workflow_overhead.json"
    shipped = yaml.safe_load(CONFIG.read_text())
    validate_config(float32_config(shipped, list(shipped["studies"])), source="amp_accuracy")
    if options.quick or not cpu_has_bf16() or not auto_json.exists():
        why = "quick" if options.quick else "no bf16 CPU or no workflow_overhead run"
        write_json("amp_accuracy", {"skipped": why}, options)
        return [row(case, None, GOAL, f"skipped: {why}")]
    workflow = json.loads(auto_json.read_text())["workflow"]
    auto = workflow["test_accuracy"]
    precisions = workflow["precisions_by_study"]
    in_bf16 = [study for study, seen in precisions.items() if "bfloat16" in seen]
    if not in_bf16:
        write_json("amp_accuracy", {"skipped": "auto trained every run in float32"}, options)
        return [row(case, 0.0, GOAL, "auto trained every run in float32: nothing to compare")]
    with tempfile.TemporaryDirectory(prefix="medflow-bench-amp-") as tmp:
        fp32 = config_accuracy(float32_config(shipped, in_bf16), Path(tmp) / "fp32")
    points = {
        study: {mode: 100 * (auto[study][mode] - value) for mode, value in modes.items()}
        for study, modes in fp32.items()
    }
    # the goal is on the refine modes' accuracies; transfer_gain is their difference
    worst = max(
        abs(d) for modes in points.values() for mode, d in modes.items() if mode in REFINE_MODES
    )
    write_json(
        "amp_accuracy",
        {
            "auto_bf16": {s: auto[s] for s in fp32},
            "float32": fp32,
            "difference_points": points,
            "precisions_under_auto": precisions,
        },
        options,
    )
    detail = "; ".join(
        f"{study} {mode} {auto[study][mode]:.3f} vs {fp32[study][mode]:.3f}"
        for study, modes in fp32.items()
        for mode in modes
    )
    only_fp32 = sorted(set(precisions) - set(in_bf16))
    return [
        row(
            case,
            worst,
            GOAL,
            f"auto vs float32 mean over seeds: {detail}; not rerun (float32 under auto "
            f"too): {', '.join(only_fp32) or 'none'}",
        )
    ]
