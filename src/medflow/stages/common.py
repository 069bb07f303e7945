"""Typed run configs from a study, and the small file contracts between stages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medflow.config.types import StudyConfig
from medflow.hpo.space import run_overrides
from medflow.layout import Layout
from medflow.ml.loop import RunConfig, TrainConfig
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig


def run_config(
    study: StudyConfig, params: Mapping[str, Any], *, epochs: int, seed: int
) -> RunConfig:
    """The study's model/optim/train settings with the sweep's choices (params) applied;
    which field each sampled parameter sets is the schema's (medflow.hpo.space)."""
    sets = run_overrides(params)
    train = {**study.train, "epochs": epochs, "seed": seed, **sets.get("train", {})}
    return RunConfig(
        model=ModelConfig.from_section({**study.model, **sets.get("model", {})}),
        optim=OptimConfig.from_section({**study.optim, **sets.get("optim", {})}),
        train=TrainConfig.from_section(train),
    )


def read_run_id(folder: Path) -> str:
    """The MLflow run id a run folder (pretrain, refine seed) records."""
    return Layout.run_id_file(folder).read_text().strip()


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
