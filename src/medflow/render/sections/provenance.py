"""The provenance section: code commit, the config, package versions, hardware, timings
per stage, and every MLflow run the results folder names (with UI links when configured)."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

import medflow
from medflow.config.types import StudyConfig
from medflow.layout import Layout
from medflow.render.blocks import (
    NONE,
    Block,
    code,
    div,
    facts_table,
    heading,
    note,
    p,
    pre,
    table,
)
from medflow.render.context import ReportContext, read_json, read_text, read_trials
from medflow.tracking.provenance import git_commit

VERSION_PACKAGES = (
    "medflow",
    "torch",
    "torchvision",
    "mlflow",
    "optuna",
    "snakemake",
    "pandas",
    "numpy",
    "scikit-learn",
    "matplotlib",
)
CLASSICS_RUN_KEYS = ("parent_run_id", "single_neuron_run_id", "mlp_run_id")


def build(ctx: ReportContext, config_text: str | None) -> list[Block]:
    config = (
        [pre(config_text)]
        if config_text is not None
        else [note("The config text was not passed to the report.")]
    )
    inventory = run_inventory(ctx)
    return [
        heading("Code", 3),
        *_git_blocks(ctx, inventory),
        heading("Configuration", 3),
        *config,
        heading("Software", 3),
        div("package-versions", _versions_table()),
        heading("Hardware", 3),
        *_hardware(),
        heading("Timings", 3),
        *_timings(ctx),
        heading("MLflow runs", 3),
        *_runs_inventory(ctx, inventory),
    ]


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _report_commit() -> str:
    commit = git_commit(Path(medflow.__file__).resolve().parent)
    return commit if commit != "unknown" else git_commit()


def _git_blocks(ctx: ReportContext, inventory: list[dict[str, Any]]) -> list[Block]:
    blocks = [p("medflow code at commit ", code(_report_commit(), id="git-commit"), ".")]
    used: dict[str, int] = {}
    for item in inventory:
        run = ctx.mlflow.run(item["run_id"])
        tag = run.data.tags.get("git_commit") if run is not None else None
        if tag:
            used[tag] = used.get(tag, 0) + 1
    if used:
        df = pd.DataFrame({"commit (MLflow tag)": list(used), "runs": list(used.values())})
        blocks += [p("Commits the runs were made with:"), table(df)]
    return blocks


def _versions_table() -> Block:
    rows = {"python": platform.python_version(), **{d: version(d) for d in VERSION_PACKAGES}}
    return table(pd.DataFrame({"package": list(rows), "version": list(rows.values())}))


def _gpu_names() -> str:
    import torch  # only for the device names; the report computes nothing with it

    if not torch.cuda.is_available():
        return "none"
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def _hardware() -> list[Block]:
    facts = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or NONE,
        "CPU count": os.cpu_count(),
        "CUDA device": _gpu_names(),
        "python executable": sys.executable,
    }
    return [
        facts_table(facts),
        p("Hardware of the machine that built the report (training may have run elsewhere)."),
    ]


def _train_seconds(ctx: ReportContext, folder: Path) -> float | None:
    result = read_json(Layout.result_file(folder)) or {}
    if result.get("train_seconds") is not None:
        return float(result["train_seconds"])
    run = ctx.mlflow.run(read_text(Layout.run_id_file(folder)))
    value = run.data.metrics.get("train_seconds") if run is not None else None
    return float(value) if value is not None else None


def _run_wall_seconds(ctx: ReportContext, run_id: str | None) -> float | None:
    run = ctx.mlflow.run(run_id)
    if run is None or not run.info.end_time or not run.info.start_time:
        return None
    return (run.info.end_time - run.info.start_time) / 1000


def _timings(ctx: ReportContext) -> list[Block]:
    rows = []
    for study in ctx.cfg.studies.values():
        for stage, values in _stage_seconds(ctx, study).items():
            known = [v for v in values if v is not None]
            rows.append(
                {
                    "study": study.name,
                    "stage": stage,
                    "runs": len(values),
                    "seconds": sum(known) if known else None,
                    "missing": len(values) - len(known),
                }
            )
    if not rows:
        return [note("No timings.")]
    caption = p(
        "pretrain/refine: training seconds (result.json, else the MLflow train_seconds metric); "
        "sweep: Optuna trial durations; evaluate: MLflow run wall time."
    )
    return [table(pd.DataFrame(rows)), caption]


def _stage_seconds(ctx: ReportContext, study: StudyConfig) -> dict[str, list[float | None]]:
    layout = ctx.layout
    stages: dict[str, list[float | None]] = {}
    if study.pretrain is not None:
        stages["pretrain"] = [
            _train_seconds(ctx, layout.pretrain(study.name, a))
            for a in study.activations
            if layout.pretrain(study.name, a).exists()
        ]
    trials = read_trials(layout.sweep_trials(study.name))
    if trials is not None and "duration_s" in trials.columns:
        stages["sweep"] = [None if pd.isna(v) else float(v) for v in trials["duration_s"]]
    stages["refine"] = [
        _train_seconds(ctx, layout.refine(study.name, m, s))
        for m in study.modes
        for s in study.seeds
        if layout.refine(study.name, m, s).exists()
    ]
    metrics = read_json(layout.evaluate_metrics(study.name))
    if metrics is not None:
        stages["evaluate"] = [_run_wall_seconds(ctx, metrics.get("mlflow_run_id"))]
    return {k: v for k, v in stages.items() if v}


def run_inventory(ctx: ReportContext) -> list[dict[str, Any]]:
    """Every MLflow run id the results folder names, with its study, stage and role."""
    items = [
        {"study": study.name, "stage": stage, "what": what, "run_id": run_id}
        for study in ctx.cfg.studies.values()
        for stage, what, run_id in _study_run_ids(ctx.layout, study)
        if run_id
    ]
    xor = (read_json(ctx.layout.classics_json()) or {}).get("xor") or {}
    for key in CLASSICS_RUN_KEYS:
        if xor.get(key):
            items.append(
                {"study": "classics", "stage": "classics", "what": key, "run_id": xor[key]}
            )
    return items


def _study_run_ids(layout: Layout, study: StudyConfig) -> Iterator[tuple[str, str, str | None]]:
    name = study.name
    if study.pretrain is not None:
        for act in study.activations:
            yield "pretrain", act, read_text(layout.pretrain_run_id(name, act))
    yield "sweep", "parent", read_text(layout.sweep_parent_run_id(name))
    for mode in study.modes:
        for seed in study.seeds:
            yield "refine", f"{mode} seed {seed}", read_text(layout.refine_run_id(name, mode, seed))
    metrics = read_json(layout.evaluate_metrics(name)) or {}
    yield "evaluate", "test", metrics.get("mlflow_run_id")


def _runs_inventory(ctx: ReportContext, inventory: list[dict[str, Any]]) -> list[Block]:
    if not inventory:
        return [note("No MLflow run ids found in the results folder.")]
    rows = []
    for item in inventory:
        run = ctx.mlflow.run(item["run_id"])
        rows.append(
            {
                "study": item["study"],
                "stage": item["stage"],
                "run": item["what"],
                "run id": ctx.run_link(item["run_id"]),
                "experiment": run.info.experiment_id if run is not None else NONE,
                "status": run.info.status if run is not None else NONE,
            }
        )
    where = (
        f"Links open the MLflow UI at {ctx.ui_url}."
        if ctx.ui_url
        else "Start `mlflow ui` on the store and pass its address to get links."
    )
    problem = [note(ctx.mlflow.problem)] if ctx.mlflow.problem else []
    return [table(pd.DataFrame(rows), scroll=True), p(where), *problem]
