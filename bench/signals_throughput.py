"""Signals: synthetic series generated per second, and training sequences per second of the
sequence models (medflow's loop, default widths) on this machine.

Run: ``python -m bench.signals_throughput [--quick] [--threads 1]``; writes
results/bench/signals_throughput.json. The training rate is the median over epochs of
training examples / epoch seconds, the tiny validation split's cost included.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import OUT_DIR, Options, pin_threads, row, write_json
from medflow.config.schema import validate_section
from medflow.data.sources.synthetic_signals import load as load_signals
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig

ARCHS = ("lstm", "resnet1d", "cnn1d", "gru", "inception_time")
LENGTH = 256


def _data(n_train: int, n_val: int) -> tuple[TrainData, float]:
    opts = validate_section(
        {"n_series": n_train + n_val, "length": LENGTH}, "synthetic_signals_options", "bench"
    )
    started = time.perf_counter()
    part = load_signals(opts, 0).splits["all"]
    generated = len(part.y) / (time.perf_counter() - started)
    x = (part.x - part.x.mean()) / part.x.std()
    tensors = map(torch.from_numpy, (x[:n_train], part.y[:n_train], x[n_train:], part.y[n_train:]))
    return TrainData("multiclass", 8, *tensors), generated


def _rate(arch: str, data: TrainData, epochs: int) -> float:
    cfg = RunConfig(
        model=ModelConfig.from_schema(arch=arch),
        optim=OptimConfig.from_schema(name="adam", lr=1e-3, schedule="constant"),
        train=TrainConfig.from_schema(epochs=epochs, batch_size=64, patience=0, seed=0),
    )
    result = train(cfg, data)
    return statistics.median(h["samples_per_s"] for h in result.history)


def bench(options: Options, archs: tuple[str, ...] = ARCHS) -> dict[str, Any]:
    n_train, epochs = (256, 1) if options.quick else (2048, 3)
    data, generated = _data(n_train, 128)
    rates = {arch: _rate(arch, data, epochs) for arch in archs}
    return {
        "config": {"length": LENGTH, "n_train": n_train, "epochs": epochs, "batch_size": 64},
        "series_generated_per_s": generated,
        "train_sequences_per_s": rates,
    }


def run(options: Options, archs: tuple[str, ...] = ARCHS) -> list[dict[str, Any]]:
    result = bench(options, archs)
    rows = [
        row(f"signals: {arch} training, sequences/s (T={LENGTH})", rate, None)
        for arch, rate in result["train_sequences_per_s"].items()
    ]
    rows.append(
        row("signals: synthetic series generated/s", result["series_generated_per_s"], None)
    )
    write_json("signals_throughput", {**result, "rows": rows}, options)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated archs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the JSON file")
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    options = Options(
        quick=args.quick,
        threads=args.threads,
        out_dir=args.out,
        command="python -m bench.signals_throughput",
    )
    for r in run(options, tuple(a for a in args.archs.split(",") if a)):
        print(f"{r['case']}: {r['ratio']:.0f}")


if __name__ == "__main__":
    main()
