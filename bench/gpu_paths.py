"""GPU paths of ``train()``: every sequence and volume model (and the 2-D CNN) trained on CUDA
with and without bf16 autocast, on random data resident on the device.

Records per model and precision: training samples/s (median over epochs), whether the loss
stayed finite, the dtype the recurrent weights keep under autocast (cuDNN LSTMs/GRUs stay
float32), and that an over-large batch is one ``train.batch_size`` error, not an OOM crash.
Runs only where ``torch.cuda.is_available()``; writes ``gpu_paths.json``.

Run: ``python -m bench.gpu_paths [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from medflow.errors import MedflowError
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig

# (arch, input shape, examples): sized so that each run takes seconds on one GPU.
CASES = (
    ("lstm", (1, 256), 8192),
    ("gru", (1, 256), 8192),
    ("cnn1d", (1, 256), 8192),
    ("resnet1d", (1, 256), 8192),
    ("inception_time", (1, 256), 4096),
    ("cnn", (1, 28, 28), 16384),
    ("cnn3d", (1, 28, 28, 28), 2048),
    ("resnet18_3d", (1, 28, 28, 28), 1024),
)


def _data(shape: tuple[int, ...], n: int, classes: int = 4) -> TrainData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, *shape), generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    n_val = max(64, n // 8)
    return TrainData("multiclass", classes, x[n_val:], y[n_val:], x[:n_val], y[:n_val])


def _config(arch: str, amp: bool, batch_size: int, epochs: int) -> RunConfig:
    return RunConfig(
        model=ModelConfig.from_schema(arch=arch),
        optim=OptimConfig.from_schema(name="adam", lr=1e-3, schedule="constant"),
        train=TrainConfig.from_schema(
            epochs=epochs, batch_size=batch_size, patience=0, seed=0, device="cuda", amp=amp
        ),
    )


def _run(arch: str, shape: tuple[int, ...], n: int, amp: bool) -> dict[str, Any]:
    result = train(_config(arch, amp, 128, 3), _data(shape, n))
    history = result.history
    rnn = next(
        (m for m in result.model.modules() if isinstance(m, torch.nn.RNNBase)),
        None,
    )
    return {
        "samples_per_s": statistics.median(h["samples_per_s"] for h in history[1:] or history),
        "final_train_loss": history[-1].get("train_loss"),
        "finite": all(
            torch.isfinite(torch.tensor(h.get("train_loss", 0.0))).item() for h in history
        ),
        "recurrent_weight_dtype": None if rnn is None else str(next(rnn.parameters()).dtype),
    }


def _oversized_batch() -> str:
    """A 64^3 resnet18_3d batch far beyond the device's memory: the message medflow gives."""
    try:
        train(_config("resnet18_3d", True, 16384, 1), _data((1, 64, 64, 64), 16384 + 64, 2))
    except MedflowError as exc:
        return f"MedflowError: {exc}"
    except torch.OutOfMemoryError as exc:  # what medflow must not let through
        return f"OutOfMemoryError (not caught): {str(exc).splitlines()[0]}"
    return "no error"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_paths: skipped (no CUDA device)")
        return
    doc: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "cases": {},
    }
    for arch, shape, n in CASES:
        for amp in (False, True):
            key = f"{arch} {'bf16' if amp else 'fp32'}"
            try:
                doc["cases"][key] = _run(arch, shape, n, amp)
            except Exception as exc:  # record and go on: one failing model must not hide the rest
                doc["cases"][key] = {"error": f"{type(exc).__name__}: {exc}"}
            print(key, json.dumps(doc["cases"][key]), flush=True)
    doc["oversized_batch"] = _oversized_batch()
    print("oversized batch:", doc["oversized_batch"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_paths.json").write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
