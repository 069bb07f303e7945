"""A tracked training run against a real SQLite MLflow store."""

from __future__ import annotations

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch

from medflow.ml.loop import RunConfig, TrainConfig
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.tracking.client import find_runs
from medflow.tracking.provenance import standard_tags
from medflow.tracking.training import tracked_training
from tests.test_train import blobs_data


def _config(**optim) -> RunConfig:
    return RunConfig(
        model=ModelConfig.from_schema(arch="mlp", hidden_sizes=(16,)),
        optim=OptimConfig.from_schema(
            **{"name": "adam", "lr": 1e-2, "schedule": "constant", **optim}
        ),
        train=TrainConfig.from_schema(
            epochs=4, batch_size=32, patience=10, monitor="val_accuracy", seed=0
        ),
    )


def _tags(**extra) -> dict[str, str]:
    return standard_tags("pretrain", "unit", "abc123", "cfg456", **extra)


def test_run_records_params_metrics_tags_artifacts_and_a_loadable_model(tracker, monkeypatch):
    data = blobs_data()
    data.dataset_hash = "abc123"
    result, run_id = tracked_training(
        _config(), data, tracker, experiment="unit", run_name="mlp", tags=_tags(seed=0)
    )
    run = tracker.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.arch"] == "mlp" and run.data.params["optim.lr"] == "0.01"
    assert run.data.params["dataset_hash"] == "abc123"
    for tag in ("stage", "study", "dataset_hash", "config_hash", "git_commit", "seed"):
        assert tag in run.data.tags
    history = tracker.client.get_metric_history(run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert run.data.metrics["best_val_accuracy"] == pytest.approx(result.best_value)
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert {"config.json", "learning_curve.png"} <= artifacts

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    x = data.x_val[:8]
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), result.model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_diverged_run_is_failed_with_reason_and_no_model(tracker):
    data = blobs_data()
    data.x_train[0, 0] = float("nan")
    result, run_id = tracked_training(
        _config(), data, tracker, experiment="unit", run_name="nan", tags=_tags()
    )
    assert result.status == "diverged"
    run = tracker.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("diverged: training loss became nan")


def test_exception_inside_training_fails_the_run_and_propagates(tracker):
    data = blobs_data()
    data.x_val = data.x_val[:, :3]  # wrong feature count: the model raises
    with pytest.raises(RuntimeError):
        tracked_training(_config(), data, tracker, experiment="unit", run_name="bad", tags=_tags())
    (run,) = find_runs(tracker, "unit")
    assert run.info.status == "FAILED" and "RuntimeError" in run.data.tags["failure_reason"]
