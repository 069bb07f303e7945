"""The training loop on real torch: learning, best-epoch model, early stop, resume, divergence."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from medflow.ml.loop import RunConfig, TrainConfig, TrainData, evaluate_scores, train
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.stats.metrics import compute_metrics


def blobs_data(
    n: int = 240, features: int = 6, seed: int = 0, task: str = "multiclass"
) -> TrainData:
    """Three noisy Gaussian classes; split 2:1 into train and validation."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = rng.normal(0, 1.5, size=(3, features))
    x = (centres[y] + rng.normal(0, 1.0, size=(n, features))).astype(np.float32)
    cut = 2 * n // 3
    return TrainData(
        task=task,
        n_classes=3,
        x_train=torch.from_numpy(x[:cut]),
        y_train=torch.from_numpy(y[:cut]),
        x_val=torch.from_numpy(x[cut:]),
        y_val=torch.from_numpy(y[cut:]),
    )


def image_data(n: int = 96, size: int = 8) -> TrainData:
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    x = rng.normal(0, 1, size=(n, 1, size, size)).astype(np.float32)
    x[y == 1, :, : size // 2] += 1.5  # class 1: bright top half
    return TrainData("binary", 2, *map(torch.from_numpy, (x[:64], y[:64], x[64:], y[64:])))


def run_config(epochs=12, arch="mlp", optim="adam", lr=1e-2, **train_kw) -> RunConfig:
    return RunConfig(
        model=ModelConfig.from_schema(
            arch=arch, hidden_sizes=(32,), dropout=0.2, activation="relu"
        ),
        optim=OptimConfig.from_schema(name=optim, lr=lr, schedule="cosine"),
        train=TrainConfig.from_schema(
            **{"epochs": epochs, "batch_size": 32, "patience": 10, "seed": 0, **train_kw}
        ),
    )


def test_learns_and_returns_the_best_epoch_not_the_last():
    data = blobs_data()
    result = train(run_config(epochs=15, monitor="val_accuracy", patience=0), data)
    assert result.status == "finished" and result.epochs_run == 15
    accs = [h["val_accuracy"] for h in result.history]
    assert result.best_value == max(accs) and accs[result.best_epoch - 1] == max(accs)
    assert result.best_value > 0.8
    # The returned weights are the best epoch's: re-scoring reproduces its metric.
    _, scores = evaluate_scores(result.model, data.x_val, data.task, torch.device("cpu"))
    again = compute_metrics(data.task, data.y_val.numpy(), scores.numpy())["accuracy"]
    assert again == pytest.approx(result.best_value)
    for key in ("train_loss", "val_loss", "val_auc", "lr", "epoch_time_s", "samples_per_s"):
        assert all(math.isfinite(h[key]) for h in result.history), key


def test_early_stopping_stops_after_patience():
    data = blobs_data()
    # Validation accuracy on 80 examples plateaus within a few epochs; patience ends the run.
    cfg = run_config(epochs=60, lr=1e-2, patience=3, monitor="val_accuracy")
    result = train(cfg, data)
    assert result.epochs_run < 60
    assert result.epochs_run - result.best_epoch == 3


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path):
    data = blobs_data()
    cfg = run_config(epochs=8, patience=0)
    whole = train(cfg, data, checkpoint=tmp_path / "whole.pt")

    class Killed(Exception):
        pass

    def die_after_epoch_3(epoch, metrics):
        if epoch == 3:
            raise Killed

    ckpt = tmp_path / "split.pt"
    with pytest.raises(Killed):
        train(cfg, data, checkpoint=ckpt, on_epoch=die_after_epoch_3)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    resumed = train(cfg, data, checkpoint=ckpt)
    strip = [
        {k: v for k, v in h.items() if k not in ("epoch_time_s", "samples_per_s")}
        for h in resumed.history
    ]
    expected = [
        {k: v for k, v in h.items() if k not in ("epoch_time_s", "samples_per_s")}
        for h in whole.history
    ]
    assert strip == expected
    for a, b in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    data = blobs_data()
    ckpt = tmp_path / "c.pt"
    train(run_config(epochs=3), data, checkpoint=ckpt)
    other = train(run_config(epochs=4, lr=5e-3), data, checkpoint=ckpt)
    assert other.epochs_run == 4 and len(other.history) == 4


def test_divergence_is_a_status_not_a_crash():
    data = blobs_data()
    data.x_train[0, 0] = float("nan")  # one poisoned value makes the loss NaN
    result = train(run_config(epochs=5, optim="sgd", lr=0.1), data)
    assert result.status == "diverged"
    assert "loss became nan in epoch 1" in result.reason


def test_streaming_path_learns_like_the_resident_path():
    data = blobs_data()
    resident = train(run_config(epochs=6, patience=0), data)
    streamed = train(run_config(epochs=6, patience=0, resident_max_mb=0), data)
    assert resident.best_value < 1.0 and streamed.best_value < 1.0  # val_loss went down
    assert streamed.history[-1]["val_loss"] < streamed.history[0]["val_loss"]


def test_cnn_on_images_with_flip_augmentation_learns():
    data = image_data()
    cfg = RunConfig(
        model=ModelConfig.from_schema(arch="cnn", width=8, depth=2),
        optim=OptimConfig.from_schema(name="adam", lr=1e-2, schedule="constant"),
        train=TrainConfig.from_schema(
            epochs=8, batch_size=16, augment="flip", monitor="val_auc", patience=0, seed=0
        ),
    )
    result = train(cfg, data)
    assert result.best_value > 0.9


def test_same_seed_same_result_and_other_seed_differs():
    data = blobs_data()
    a = train(run_config(epochs=3, patience=0), data)
    b = train(run_config(epochs=3, patience=0), data)
    c = train(run_config(epochs=3, patience=0, seed=1), data)
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    assert a.history[-1]["val_loss"] != c.history[-1]["val_loss"]


def test_training_jobs_start_without_scikit_learn_scipy_stats_or_matplotlib():
    """What a pretrain, sweep-worker or refine job imports before it trains: the per-epoch
    metrics are numpy (medflow.stats.counted), so the 0.9 s of scikit-learn and SciPy's
    stats module is paid only by jobs that fit or test something with them."""
    code = (
        "import sys; import medflow.cli, medflow.stages.pretrain, medflow.stages.sweep, "
        "medflow.stages.refine, medflow.hpo.worker, medflow.ml.loop; "
        "print(sorted({m.split('.')[0] if m.startswith(('sklearn', 'matplotlib')) else m "
        "for m in sys.modules if m.startswith(('sklearn', 'matplotlib', 'scipy.stats'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
