"""The sweep stage's bookends: create the study and its MLflow parent run, then write
the best trial. What a trial trains is in medflow.stages.sweep_worker; keeping it apart
keeps torch, scikit-learn and matplotlib out of these two short jobs (3.4 s of imports).
"""

from __future__ import annotations

import logging
from pathlib import Path

from medflow.config.types import StudyConfig, TrackingConfig
from medflow.data.format import PreparedDataset
from medflow.errors import MedflowError
from medflow.hpo.worker import SearchSpace, SweepConfig, init_sweep, summarize
from medflow.layout import Layout
from medflow.ml.monitor import direction
from medflow.tracking.client import Tracker, config_hash, standard_tags

log = logging.getLogger(__name__)


def sweep_config(study: StudyConfig) -> SweepConfig:
    options = {k: v for k, v in study.sweep.items() if k != "space"}
    monitor = study.train["monitor"]
    return SweepConfig.from_dict({**options, "metric": monitor, "direction": direction(monitor)})


def search_space(study: StudyConfig) -> SearchSpace:
    return SearchSpace.from_dict(study.sweep["space"])


def sweep_tags(study: StudyConfig, dataset_hash: str, stage: str) -> dict[str, str]:
    return standard_tags(stage, study.name, dataset_hash, config_hash(study.sweep))


def init_study_sweep(study: StudyConfig, tracking: TrackingConfig, layout: Layout) -> str:
    target = PreparedDataset.open(layout.prepared(study.target))
    tracker = Tracker.for_results(layout.results, tracking.uri)
    return init_sweep(
        sweep_config(study),
        layout.sweep(study.name),
        study.name,
        tracker,
        tracking.experiment(study.name),
        sweep_tags(study, target.content_hash, "sweep"),
    )


def summarize_study_sweep(study: StudyConfig, tracking: TrackingConfig, layout: Layout) -> dict:
    folder: Path = layout.sweep(study.name)
    summary = summarize(sweep_config(study), folder, study.name, folder)
    if "params" not in summary:
        raise MedflowError(f"{folder}/best_params.json has no params")
    tracker = Tracker.for_results(layout.results, tracking.uri)
    parent = (folder / "parent_run_id.txt").read_text().strip()
    tracker.log_artifact(parent, str(folder / "trials.csv"))
    tracker.log_artifact(parent, str(folder / "best_params.json"))
    tracker.set_tags(
        parent,
        {
            "best_trial": str(summary.get("number")),
            **{f"best_{k}": str(v) for k, v in summary["params"].items()},
        },
    )
    return summary
