"""The baselines section: published MedMNIST v2 numbers (data files shipped with the
package: Table 3 for the 2-D flags, Table 4 for the 3-D ones) for MedMNIST targets, the
analyze stage's classical baselines for tabular and sequence ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from medflow.config.types import StudyConfig
from medflow.render.blocks import TIMES, Block, fmt, note, p, table
from medflow.render.context import ReportContext, read_json
from medflow.render.sections.results import mean_ci, mode_summaries

PUBLISHED_FILE = "medmnist_v2.yaml"
PUBLISHED_3D_FILE = "medmnist_v2_3d.yaml"


@cache
def published_medmnist(name: str = PUBLISHED_FILE) -> dict[str, Any]:
    """A MedMNIST v2 table: 2-D {"source", "cited_as", "model", "flags": {flag: {size: ...}}};
    3-D {"source", "cited_as", "size", "models", "flags": {flag: {model: ...}}}."""
    text = resources.files("medflow.render").joinpath("baselines", name).read_text()
    return yaml.safe_load(text)


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    meta = read_json(ctx.layout.prepared_meta(study.target))
    if meta is None:
        return [note(f"Dataset {study.target} is not prepared.")]
    metrics = read_json(ctx.layout.evaluate_metrics(study.name)) or {}
    if meta.get("kind") in ("tabular", "sequence"):
        return _classical(read_json(ctx.layout.analysis_baseline(study.name)), metrics)
    if meta.get("source") == "medmnist" and meta.get("kind") == "volume":
        return _medmnist_3d(meta, metrics)
    if meta.get("source") == "medmnist":
        return _medmnist(meta, metrics)
    return [
        p(
            f"No published or classical baseline applies to {study.target} "
            f"(source {meta.get('source')}, {meta.get('kind')} data)."
        )
    ]


def _ours_rows(metrics: Mapping[str, Any], keys: Sequence[str]) -> list[dict[str, str]]:
    return [
        {"model": f"ours: {mode}", **{k: mean_ci(stats.get(k)) for k in keys}}
        for mode, stats in mode_summaries(metrics).items()
    ]


def _classical(found: Mapping[str, Any] | None, metrics: Mapping[str, Any]) -> list[Block]:
    if found is None:
        return [note("No classical baseline (the analyze stage has not run).")]
    if not found.get("applies"):
        return [p(found["note"])]
    baselines = found["baselines"]
    keys = list(baselines[0]["metrics"])
    rows = [
        {"model": b["method"], **{k: fmt(v) for k, v in b["metrics"].items()}} for b in baselines
    ]
    rows += _ours_rows(metrics, keys)
    estimators = ", ".join(b["estimator"] for b in baselines)
    text = p(
        f"scikit-learn {estimators} on the normalised train split "
        f"({found['n_train']} examples), scored on the same test split "
        f"({found['n_test']}); ours: mean over seeds with its 95% interval."
    )
    return [table(pd.DataFrame(rows)), text]


def _medmnist(meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[Block]:
    notes = meta.get("notes") or {}
    flag = notes.get("flag") or ((meta.get("config") or {}).get("options") or {}).get("flag")
    table_data = published_medmnist()
    published = table_data["flags"].get(str(flag))
    if published is None:
        return [
            p(
                f"No published MedMNIST v2 numbers are embedded for flag {flag!r} "
                f"(embedded: {', '.join(table_data['flags'])})."
            )
        ]
    rows = [
        {
            "model": f"{table_data['model']} ({size}) published",
            "auc": fmt(values["auc"]),
            "accuracy": fmt(values["accuracy"]),
        }
        for size, values in published.items()
    ]
    rows += _ours_rows(metrics, ("auc", "accuracy"))
    size = notes.get("size", 28)
    official = "official" if meta.get("splits_from_source") else "NOT the official"
    text = p(
        f"Published test AUC/ACC for {flag} from MedMNIST v2 ({table_data['cited_as']}). "
        f"Ours: {size}{TIMES}{size} images, {official} splits.{_release(notes)}"
    )
    return [table(pd.DataFrame(rows)), text]


def _release(notes: Mapping[str, Any]) -> str:
    """The reader's check of the file against the medmnist INFO table (older prepared data
    has none)."""
    return f" Our file: {notes['release']}." if notes.get("release") else ""


def _medmnist_3d(meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[Block]:
    notes = meta.get("notes") or {}
    flag = str(notes.get("flag"))
    table_data = published_medmnist(PUBLISHED_3D_FILE)
    published = table_data["flags"].get(flag)
    if published is None:
        embedded = ", ".join(table_data["flags"])
        return [
            p(f"No published MedMNIST v2 3-D numbers for flag {flag!r} (embedded: {embedded}).")
        ]
    size = table_data["size"]
    rows = [
        {
            "model": f"{model} ({size}{TIMES}{size}{TIMES}{size}) published",
            "auc": fmt(values["auc"]),
            "accuracy": fmt(values["accuracy"]),
        }
        for model, values in published.items()
    ]
    rows += _ours_rows(metrics, ("auc", "accuracy"))
    ours = notes.get("size", 28)
    official = "official" if meta.get("splits_from_source") else "NOT the official"
    missing = [m for m, v in published.items() if v["auc"] is None or v["accuracy"] is None]
    left_out = (
        f" Left out (not cross-checked here; see the source): {', '.join(missing)}."
        if missing
        else ""
    )
    text = p(
        f"Published test AUC/ACC for {flag} from MedMNIST v2 ({table_data['cited_as']}). "
        f"Ours: {ours}{TIMES}{ours}{TIMES}{ours} volumes, {official} splits.{left_out}"
        f"{_release(notes)}"
    )
    return [table(pd.DataFrame(rows)), text]
