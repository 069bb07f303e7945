"""The classics stage through the real workflow: JSON file, MLflow parent/child runs, model."""

from __future__ import annotations

import json

import mlflow
import mlflow.pytorch
import pytest
import torch
import yaml

from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs
from tests.conftest import run_snakemake
from tests.test_classics import assert_lecture_or_table

pytestmark = pytest.mark.slow

GATES = {
    "gate_or": {"source": "gates", "options": {"gate": "OR"}},
    "gate_and": {"source": "gates", "options": {"gate": "AND"}},
    "gate_xor": {"source": "gates", "options": {"gate": "XOR"}},
}


def test_classics_rule_writes_the_lecture_values_and_logs_runs(tmp_path, monkeypatch):
    config = tmp_path / "classics.yaml"
    config.write_text(
        yaml.safe_dump({"datasets": GATES, "classics": {"enabled": True, "long_iterations": 2000}})
    )
    result = run_snakemake(
        "results/classics/perceptron.json",
        "--cores",
        "2",
        "--configfile",
        str(config),
        workdir=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads((tmp_path / "results/classics/perceptron.json").read_text())

    assert_lecture_or_table(doc["or_by_hand"]["rows"])
    for gate in ("OR", "AND", "XOR"):
        assert len(doc["training"][gate]["mse"]) == 10
        assert len(doc["training"][gate]["w"]) == 2
    assert doc["training"]["OR"]["mse"][0] == pytest.approx(0.33523938907916817)
    xor = doc["xor"]
    assert xor["single_neuron_accuracy"] <= 0.75 and xor["mlp_accuracy"] == 1.0

    tracker = Tracker.for_results(tmp_path / "results")
    runs = {r.info.run_id: r for r in find_runs(tracker, "medflow/classics")}
    assert len(runs) == 6
    assert all(r.info.status == "FINISHED" for r in runs.values())
    parent = runs[xor["parent_run_id"]]
    children = [r for r in runs.values() if r.data.tags.get(PARENT_RUN_TAG) == parent.info.run_id]
    assert len(children) == 5
    for run in runs.values():
        for tag in ("stage", "study", "dataset_hash", "config_hash", "git_commit"):
            assert run.data.tags.get(tag), (run.info.run_name, tag)
        assert run.data.tags["stage"] == "classics"
    by_name = {r.info.run_name: r.info.run_id for r in children}
    assert set(by_name) == {
        "perceptron OR",
        "perceptron AND",
        "perceptron XOR",
        "xor single neuron",
        "xor mlp",
    }
    mse = tracker.client.get_metric_history(by_name["perceptron OR"], "mse")
    assert [m.value for m in sorted(mse, key=lambda m: m.step)] == doc["training"]["OR"]["mse"]
    long_run = tracker.client.get_metric_history(by_name["xor single neuron"], "mse")
    assert len(long_run) == 2000  # every iteration arrives, sent in batches

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    mlp = mlflow.pytorch.load_model(f"runs:/{xor['mlp_run_id']}/model")
    table = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float32)
    with torch.no_grad():
        assert (mlp(table)[:, 0] > 0).int().tolist() == [0, 1, 1, 0]
