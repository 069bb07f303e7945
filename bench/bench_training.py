"""Training-loop benchmarks, measured side by side in one run.

1. Data path: medflow's device-resident, index-batched loop vs a plain
   DataLoader(TensorDataset) loop, same model, data, epochs and batch size.
2. Logging cost: epoch time with full MLflow logging over epoch time without.

Usage: python bench/bench_training.py [--pairs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench.common import interleaved, pin_threads, timed, write_json
from medflow.experiment import MlflowEpochLogger
from medflow.metrics import compute_metrics
from medflow.models import ModelConfig, build_model
from medflow.optim import OptimConfig, build_loss, build_optimizer, predict_scores
from medflow.tracking import Tracker
from medflow.train import RunConfig, TrainConfig, TrainData, train


def image_data(n: int, size: int, classes: int = 10) -> TrainData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    val = max(64, n // 16)
    return TrainData("multiclass", classes, x[val:], y[val:], x[:val], y[:val])


def run_config(epochs: int, batch: int, arch: str, width: int = 16) -> RunConfig:
    return RunConfig(
        model=ModelConfig(arch=arch, width=width, depth=2, hidden_sizes=(64,)),
        optim=OptimConfig(name="sgd", lr=0.01),
        train=TrainConfig(epochs=epochs, batch_size=batch, patience=0, device="cpu"),
    )


def dataloader_loop(run: RunConfig, data: TrainData) -> None:
    """The textbook loop: DataLoader over a TensorDataset, per-sample indexing and collation."""
    torch.manual_seed(run.train.seed)
    model = build_model(run.model, data.input_shape, data.n_classes)
    optimizer = build_optimizer(run.optim, model.parameters())
    loss_fn = build_loss(data.task)
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=run.train.batch_size, shuffle=True
    )
    val_loader = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=1024)
    loss_fn_val = build_loss(data.task)
    for _ in range(run.train.epochs):
        model.train()
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():  # the same validation work as medflow's loop: loss + metrics
            logits = torch.cat([model(xb) for xb, _ in val_loader])
            loss_fn_val(logits, data.y_val)
            compute_metrics(
                data.task, data.y_val.numpy(), predict_scores(data.task, logits).numpy()
            )


def bench_data_path(pairs: int) -> list[dict]:
    rows = []
    # (image size, architecture, cnn width, examples): digits-sized MLP/CNN up to MedMNIST-sized.
    cases = ((8, "mlp", 0, 16384), (8, "cnn", 8, 8192), (28, "mlp", 0, 8192), (28, "cnn", 16, 4096))
    for size, arch, width, n in cases:
        data = image_data(n, size)
        run = run_config(epochs=2, batch=64, arch=arch, width=width or 16)
        result = interleaved(
            lambda run=run, data=data: timed(lambda: train(run, data)),
            lambda run=run, data=data: timed(lambda: dataloader_loop(run, data)),
            pairs,
        )
        samples = run.train.epochs * len(data.y_train)
        rows.append(
            {
                "name": f"data path {arch} {size}x{size}: medflow vs DataLoader",
                "images_per_s_medflow": samples / result["a_median_s"],
                "images_per_s_dataloader": samples / result["b_median_s"],
                "speedup": result["ratio_b_over_a"],
                "goal": ">= 2",
                **result,
            }
        )
    return rows


def bench_logging(pairs: int) -> dict:
    data = image_data(4096, 8)
    run = run_config(epochs=5, batch=64, arch="cnn")
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{Path(tmp) / 'mlflow.db'}", str(Path(tmp) / "art"))
        experiment = tracker.get_or_create_experiment("bench")

        def with_logging() -> float:
            run_id = tracker.start_run("bench", "logged", {"stage": "bench"})
            seconds = timed(lambda: train(run, data, MlflowEpochLogger(tracker, run_id)))
            tracker.end_run(run_id)  # flushes the batched metrics: part of the cost
            return seconds

        result = interleaved(lambda: timed(lambda: train(run, data)), with_logging, pairs)
        del experiment
    return {
        "name": "logging cost: epoch time with MLflow over without",
        "ratio": result["ratio_b_over_a"],
        "goal": "<= 1.03",
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    pin_threads(args.threads)
    np.random.seed(0)
    rows = bench_data_path(args.pairs)
    logging_row = bench_logging(args.pairs)
    path = write_json("training", {"data_path": rows, "logging": logging_row})
    print(f"{'benchmark':58s} {'ratio':>7s}  goal")
    for row in rows:
        print(f"{row['name']:58s} {row['speedup']:7.2f}  {row['goal']}")
    print(f"{logging_row['name']:58s} {logging_row['ratio']:7.3f}  {logging_row['goal']}")
    print(f"written {path}")


if __name__ == "__main__":
    main()
