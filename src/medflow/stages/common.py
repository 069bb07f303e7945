"""Typed run configs from a study, and the small file contracts between stages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medflow.config.types import StudyConfig
from medflow.ml.loop import RunConfig, TrainConfig
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig

RUN_ID_FILE = "run_id.txt"
MODEL_FILE = "model.pt"
RESULT_FILE = "result.json"


def run_config(
    study: StudyConfig, params: Mapping[str, Any], *, epochs: int, seed: int
) -> RunConfig:
    """The study's model/optim/train settings with the sweep's choices (params) applied."""
    model = {**study.model, "activation": params.get("activation", study.model["activation"])}
    optim = {
        **study.optim,
        "name": params.get("optimizer", study.optim["name"]),
        "lr": params.get("lr", study.optim["lr"]),
        "weight_decay": params.get("weight_decay", study.optim["weight_decay"]),
    }
    train = {
        **study.train,
        "epochs": epochs,
        "seed": seed,
        "batch_size": params.get("batch_size", study.train["batch_size"]),
    }
    return RunConfig(
        model=ModelConfig.from_dict(model),
        optim=OptimConfig.from_dict(optim),
        train=TrainConfig.from_dict(train),
    )


def read_run_id(folder: Path) -> str:
    return (folder / RUN_ID_FILE).read_text().strip()


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
