"""What every report section reads: the config, the results layout, the MLflow read side,
and small readers for the JSON/CSV/text files earlier jobs wrote (missing file -> None)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medflow.config.types import MedflowConfig
from medflow.layout import Layout
from medflow.render.blocks import NONE, code
from medflow.tracking.queries import RunReader


@dataclass(frozen=True)
class ReportContext:
    cfg: MedflowConfig
    layout: Layout
    mlflow: RunReader
    ui_url: str | None

    def run_link(self, run_id: str | None) -> Any:
        """The run id as an MLflow UI link when an address was given, else as code."""
        if not run_id:
            return NONE
        run = self.mlflow.run(run_id) if self.ui_url else None
        if run is None:
            return code(run_id)
        return code(run_id, f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run_id}")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def read_trials(path: Path) -> pd.DataFrame | None:
    """trials.csv with the ``param_`` prefix dropped from its columns."""
    if not path.exists():
        return None
    trials = pd.read_csv(path)
    trials.columns = [c.removeprefix("param_") for c in trials.columns]
    return trials
