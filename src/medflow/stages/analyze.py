"""The analyze stage: what the report shows that needs the test split, a trained model or
the Optuna study, computed once per study into files under evaluate/<study>/analysis/.

baseline.json (classical baselines on tabular and sequence targets), importances.json
(fANOVA on the sweep), representation.json plus figures/ (first-layer filters and feature
maps, or for sequences a time-resolved saliency, of the model best on validation; for
volumes the filters and maps as slices).
Evaluate-side: with evaluate, the only jobs that read test data.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from medflow.analysis.baseline import classical_baselines
from medflow.analysis.importance import fanova_importances
from medflow.analysis.representation import (
    feature_maps_figure,
    filters_figure,
    first_conv,
    saliency_figure,
)
from medflow.config.types import StudyConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.hpo.space import optuna_study_name, sweep_config
from medflow.hpo.study import open_study
from medflow.layout import Layout
from medflow.ml.transfer import load_model_file
from medflow.runtime.io import atomic_write_bytes, write_json_atomic
from medflow.stages.common import read_json
from medflow.stages.context import StageContext

log = logging.getLogger(__name__)

FIGURE_DPI = 90  # the resolution the report embeds figures at


def run(ctx: StageContext, study: StudyConfig) -> dict[str, Any]:
    """Write the study's baseline, importances and representation files; return them."""
    layout = ctx.layout
    data = PreparedDataset.open(layout.prepared(study.target))
    layout.analysis(study.name).mkdir(parents=True, exist_ok=True)
    docs = {
        layout.analysis_baseline(study.name): classical_baselines(data),
        layout.analysis_importances(study.name): importances(layout, study),
        layout.analysis_representation(study.name): representation(layout, study, data),
    }
    for path, doc in docs.items():
        write_json_atomic(doc, path)
        log.info("%s: wrote %s", study.name, path)
    return {path.stem: doc for path, doc in docs.items()}


def importances(layout: Layout, study: StudyConfig) -> dict[str, Any]:
    """fANOVA importances of the study's sweep, or a note saying why there are none."""
    cfg = sweep_config(study)
    folder = layout.sweep(study.name)
    if cfg.storage is None and not Layout.journal_file(folder).exists():
        return {"note": f"No Optuna journal in {folder}; importances need the study."}
    try:
        name = optuna_study_name(
            study, PreparedDataset.open(layout.prepared(study.target)).content_hash
        )
        optuna_study = open_study(cfg, folder, name, create=False)
    except MedflowError as exc:
        return {"note": f"Parameter importances not available: {exc}"}
    return fanova_importances(optuna_study)


def _best_model(layout: Layout, study: StudyConfig) -> tuple[str, int, Path] | None:
    """The refine model best on validation (evaluate's choice), else the first one found."""
    metrics_path = layout.evaluate_metrics(study.name)
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    best = metrics.get("best_on_validation") or {}
    candidates = [(best.get("mode"), best.get("seed"))]
    if None in candidates[0]:
        candidates = [(m, s) for m in study.modes for s in study.seeds]
    for mode, seed in candidates:
        path = layout.refine_model(study.name, mode, seed)
        if path.exists():
            return mode, seed, path
    return None


def representation(layout: Layout, study: StudyConfig, data: PreparedDataset) -> dict[str, Any]:
    """Draw the representation figures of the model best on validation (images: filters and
    feature maps; sequences: saliency); the record says which exist, and why not."""
    figures = layout.analysis_figures(study.name)
    figures.mkdir(parents=True, exist_ok=True)
    name = study.name
    for stale in (
        layout.analysis_filters(name),
        layout.analysis_feature_maps(name),
        layout.analysis_saliency(name),
    ):
        stale.unlink(missing_ok=True)
    kind = data.meta.get("kind")
    if kind not in ("image", "sequence", "volume"):
        note = f"Does not apply: the target is {kind} data, with no conv filters or time axis."
        return {"status": "not_applicable", "note": note}
    found = _best_model(layout, study)
    if found is None:
        note = "No refine model.pt found for the best-on-validation run."
        return {"status": "missing", "note": note}
    mode, seed, path = found
    model, _ = load_model_file(path)
    who = f"{mode} seed {seed}"
    if kind == "sequence":
        drawn = {layout.analysis_saliency(name): (saliency_figure(model, data, who), "saliency")}
    elif kind == "volume":
        from medflow.analysis import volume_representation as volumes

        conv3d = volumes.first_conv3d(model)
        if conv3d is None:
            note = f"Does not apply: the {study.model.get('arch')} model has no 3-D conv layer."
            return {"status": "not_applicable", "note": note}
        drawn = {
            layout.analysis_filters(name): (
                volumes.filters3d_figure(conv3d, who),
                "first-layer 3-D filters as slices",
            ),
            layout.analysis_feature_maps(name): (
                volumes.feature_maps3d_figure(model, data, who),
                "feature maps as slices",
            ),
        }
    else:
        conv = first_conv(model)
        if conv is None:
            note = f"Does not apply: the {study.model.get('arch')} model has no conv layer."
            return {"status": "not_applicable", "note": note}
        drawn = {
            layout.analysis_filters(name): (filters_figure(conv, who), "first-layer filters"),
            layout.analysis_feature_maps(name): (
                feature_maps_figure(model, data, who),
                "feature maps",
            ),
        }
    entries = []
    for png, ((fig, caption), alt) in drawn.items():
        _save_png(fig, png)
        entries.append({"file": png.name, "caption": caption, "alt": alt})
    return {
        "status": "done",
        "mode": mode,
        "seed": seed,
        "model": str(path.relative_to(layout.results)),
        "figures": entries,
    }


def _save_png(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    atomic_write_bytes(path, buffer.getvalue())
