"""The classics stage: the lecture's perceptron experiments, logged to MLflow.

Reads the prepared OR/AND/XOR datasets (so the truth tables flow through prepare
like any data, with their content hashes), logs one parent run with a child run
per experiment, and writes Layout.classics_json().
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medflow.config.types import ClassicsSettings
from medflow.data.format import PreparedDataset
from medflow.errors import DataError
from medflow.layout import Layout
from medflow.ml.perceptron import (
    GATES,
    ClassicsConfig,
    gate_table,
    gate_targets,
    run_classics,
    xor_experiment,
)
from medflow.runtime.digest import config_hash
from medflow.runtime.io import write_json_atomic
from medflow.stages.context import StageContext
from medflow.tracking.client import Tracker
from medflow.tracking.models import log_torch_model
from medflow.tracking.provenance import standard_tags
from medflow.tracking.runs import tracked_run

log = logging.getLogger(__name__)
STUDY = "classics"


def gate_hashes(settings: ClassicsSettings, layout: Layout) -> dict[str, str]:
    """Content hash of each prepared gate dataset, after checking it holds that gate's table."""
    hashes = {}
    for gate, name in settings.datasets.items():
        ds = PreparedDataset.open(layout.prepared(name))
        train = ds.load("train")
        if not (
            np.array_equal(train.x, gate_table()) and np.array_equal(train.y, gate_targets(gate))
        ):
            raise DataError(f"{ds.root}: does not hold the {gate} truth table")
        hashes[gate] = ds.content_hash
    return hashes


def _log_series(tracker: Tracker, run_id: str, name: str, values: list[float]) -> None:
    for step, value in enumerate(values, start=1):
        tracker.log_metrics(run_id, {name: value}, step=step)


def run(ctx: StageContext, settings: ClassicsSettings, out: Path | None = None) -> dict[str, Any]:
    """Train and log the experiments; write their JSON to ``out`` (default: the layout's)."""
    cfg = ClassicsConfig.from_section(settings.params)
    out = out or ctx.layout.classics_json()
    hashes = gate_hashes(settings, ctx.layout)
    xor = xor_experiment(cfg)
    doc = run_classics(cfg, xor)
    tracker = ctx.open_tracker()
    experiment = ctx.experiment(STUDY)
    cfg_hash = config_hash(settings.params)
    all_hashes = hashlib.sha256("".join(sorted(hashes.values())).encode()).hexdigest()[:16]
    params = dict(settings.params)

    def tags(gate: str, **extra: Any) -> dict[str, str]:
        return standard_tags("classics", STUDY, hashes[gate], cfg_hash, gate=gate, **extra)

    parent_tags = standard_tags("classics", STUDY, all_hashes, cfg_hash)
    with tracked_run(tracker, experiment, "classics", parent_tags) as parent:
        tracker.log_params(parent, params)
        for gate in GATES:
            result = doc["training"][gate]
            with tracked_run(tracker, experiment, f"perceptron {gate}", tags(gate), parent) as rid:
                tracker.log_params(rid, params)
                _log_series(tracker, rid, "mse", result["mse"])
                w1, w2 = result["w"]
                final = {"w1": w1, "w2": w2, "b": result["b"]}
                tracker.log_metrics(rid, final, step=cfg.iterations)
        with tracked_run(tracker, experiment, "xor single neuron", tags("XOR"), parent) as neuron:
            tracker.log_params(neuron, params)
            _log_series(tracker, neuron, "mse", xor.single_neuron_loss)
            tracker.log_metrics(neuron, {"accuracy": xor.single_neuron_accuracy}, step=0)
        with tracked_run(tracker, experiment, "xor mlp", tags("XOR"), parent) as mlp:
            tracker.log_params(mlp, params)
            _log_series(tracker, mlp, "bce", xor.mlp_loss)
            tracker.log_metrics(mlp, {"accuracy": xor.mlp_accuracy}, step=0)
            log_torch_model(tracker, mlp, xor.mlp, gate_table().astype(np.float32))
        doc["xor"].update(single_neuron_run_id=neuron, mlp_run_id=mlp, parent_run_id=parent)
        tracker.log_dict(parent, doc, ctx.layout.classics_json().name)
    write_json_atomic(doc, out)
    log.info(
        "classics: OR mse %.4f -> %.4f; XOR single neuron %.2f, MLP %.2f",
        doc["training"]["OR"]["mse"][0],
        doc["training"]["OR"]["mse"][-1],
        xor.single_neuron_accuracy,
        xor.mlp_accuracy,
    )
    return doc
