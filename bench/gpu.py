"""GPU throughput: ResNet-18 training images/s and the fraction of the bf16 dense peak.

Runs only where ``torch.cuda.is_available()``; elsewhere it records
``{"skipped": "no CUDA device"}``. On a GPU, side by side in one process:

- ``medflow``-style loop (what ``train()`` does on CUDA): data resident on the device, batches
  by index, bf16 autocast, channels_last, ``zero_grad(set_to_none=True)``, no per-batch sync;
  eager and, where it works, ``torch.compile``: CIFAR-style ResNet-18 (medflow's 3x3 stem for
  small inputs) at 28x28 and torchvision's ResNet-18 at 224x224;
- the MedMNIST reference-style loop at 28x28: uint8 images, PIL + ``ToTensor`` + ``Normalize``
  per sample in a ``DataLoader`` (no workers), fp32, ``.to(device)`` per batch;
- medflow's own ``train()`` at 28x28 (its ``samples_per_s`` includes validation).

Model FLOPs are analytic: multiply-accumulates of every Conv2d/Linear counted by forward hooks
on one image (CIFAR-style ResNet-18 at 28x28: about 0.46 GMAC), training = 3 x forward,
2 FLOPs per MAC; % of peak uses the device's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.common import Options, interleaved, row, write_json
from bench.data_path import REFERENCE_TRANSFORM, MedMNISTStyle
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import ModelConfig, build_model
from medflow.ml.optim import OptimConfig, build_optimizer
from medflow.ml.work import forward_macs

SKIPPED = {"skipped": "no CUDA device"}
# Dense (no sparsity) bf16 tensor-core peaks in TFLOPS, matched as substrings of the device
# name, most specific first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
)
N_CLASSES = 10


def peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops
    return None


def resnet18(size: int) -> nn.Module:
    """medflow's ResNet-18: CIFAR-style 3x3 stem below 64 px, torchvision's stem above."""
    return build_model(ModelConfig.from_schema(arch="resnet18"), (3, size, size), N_CLASSES)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    *,
    bf16: bool = True,
    compile_model: bool = False,
) -> Callable[[int], float]:
    """medflow's CUDA training step over device-resident data; returns ``steps -> seconds``."""
    device = x.device
    model = model.to(device, memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        OptimConfig.from_schema(name="momentum", lr=0.01), model.parameters()
    )
    loss_fn = nn.CrossEntropyLoss()
    forward = torch.compile(model) if compile_model else model

    def step(idx: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(x.index_select(0, idx)).float(), y.index_select(0, idx))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def run(steps: int) -> float:
        order = torch.randint(0, len(y), (steps, batch), device=device)
        _sync(device)
        started = time.perf_counter()
        for i in range(steps):
            step(order[i])
        _sync(device)
        return time.perf_counter() - started

    model.train()
    return run


def reference_steps(model: nn.Module, images: np.ndarray, targets: np.ndarray, batch: int):
    """The MedMNIST reference loop on ``device``: per-sample PIL transforms, fp32."""
    device = next(model.parameters()).device
    loader = DataLoader(
        MedMNISTStyle(images, targets, REFERENCE_TRANSFORM), batch_size=batch, shuffle=True
    )
    optimizer = build_optimizer(
        OptimConfig.from_schema(name="momentum", lr=0.01), model.parameters()
    )
    loss_fn = nn.CrossEntropyLoss()

    def run(steps: int) -> float:
        _sync(device)
        started = time.perf_counter()
        done = 0
        while done < steps:
            for inputs, labels in loader:
                inputs, labels = inputs.to(device), labels.to(device).squeeze(1).long()
                optimizer.zero_grad()
                loss = loss_fn(model(inputs), labels)
                loss.backward()
                optimizer.step()
                done += 1
                if done == steps:
                    break
        _sync(device)
        return time.perf_counter() - started

    model.train()
    return run


def images_per_s(run: Callable[[int], float], steps: int, batch: int, warmup: int = 5) -> float:
    run(warmup)
    return steps * batch / run(steps)


def percent_of_peak(images_s: float, train_flops_per_image: float, peak: float | None):
    return None if peak is None else 100 * images_s * train_flops_per_image / (peak * 1e12)


def bench_gpu(quick: bool, rounds: int) -> dict[str, Any]:
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = peak_tflops(name)
    torch.backends.cudnn.benchmark = True
    steps, batch, n = (10, 64, 1024) if quick else (100, 256, 16384)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28, 3), dtype=np.uint8)
    targets = rng.integers(0, N_CLASSES, size=(n, 1), dtype=np.uint8)
    x28 = (torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255) - 0.5) / 0.5
    y28 = torch.from_numpy(targets[:, 0].astype(np.int64))
    results: dict[str, Any] = {"device": name, "peak_bf16_tflops": peak, "batch": batch}

    for size, n_images in ((28, n), (224, 4 * batch)):
        model = resnet18(size)
        flops = 3 * 2 * forward_macs(model, (3, size, size))
        if size == 28:
            x, y = x28.to(device), y28.to(device)
        else:
            x = torch.randn(n_images, 3, size, size, generator=gen).to(device)
            y = torch.randint(0, N_CLASSES, (n_images,), generator=gen).to(device)
        entry: dict[str, Any] = {"train_gflop_per_image": flops / 1e9}
        for compiled in (False, True):
            label = "compiled" if compiled else "eager"
            try:
                torch.manual_seed(0)
                run = resident_steps(resnet18(size), x, y, batch, compile_model=compiled)
                ips = images_per_s(run, steps, batch, warmup=20 if compiled else 5)
                entry[label] = {
                    "images_per_s": ips,
                    "percent_of_bf16_peak": percent_of_peak(ips, flops, peak),
                }
            except Exception as exc:  # torch.compile needs a working toolchain (triton, cc)
                entry[label] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        results[f"resnet18_{size}"] = entry

    # Side by side at 28x28: medflow-style (eager) vs the MedMNIST reference loop.
    torch.manual_seed(0)
    ours = resident_steps(resnet18(28), x28.to(device), y28.to(device), batch)
    torch.manual_seed(0)
    ref = reference_steps(resnet18(28).to(device), images, targets, batch)
    ref_steps = max(2, steps // 5)
    ab = interleaved(lambda: ours(ref_steps), lambda: ref(ref_steps), rounds)
    results["medflow_vs_reference_28"] = {
        "steps_per_round": ref_steps,
        "images_per_s_medflow": ref_steps * batch / ab["a_median_s"],
        "images_per_s_reference": ref_steps * batch / ab["b_median_s"],
        "speedup": ab["ratio_b_over_a"],
        **ab,
    }
    results["medflow_train_28"] = _medflow_train(x28, y28, batch, quick)
    return results


def _medflow_train(x: torch.Tensor, y: torch.Tensor, batch: int, quick: bool) -> dict[str, Any]:
    """medflow's ``train()`` itself (bf16 + channels_last on CUDA), epoch incl. validation."""
    val = len(y) // 8
    data = TrainData("multiclass", N_CLASSES, x[val:], y[val:], x[:val], y[:val])
    run = RunConfig(
        model=ModelConfig.from_schema(arch="resnet18"),
        optim=OptimConfig.from_schema(name="momentum", lr=0.01, schedule="constant"),
        train=TrainConfig.from_schema(
            epochs=2 if quick else 3, batch_size=batch, patience=0, device="cuda", seed=0
        ),
    )
    history = train(run, data).history
    return {
        "samples_per_s_by_epoch": [h["samples_per_s"] for h in history],
        "epoch_time_s": [h["epoch_time_s"] for h in history],
    }


def run(options: Options) -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        print("gpu: skipped (no CUDA device)")
        write_json("gpu", {"description": __doc__, **SKIPPED}, options)
        return [row("gpu: ResNet-18 28x28 MedMNIST reference / medflow", None, None, "no GPU")]
    result = bench_gpu(options.quick, options.rounds)
    r28, r224 = result["resnet18_28"], result["resnet18_224"]
    side = result["medflow_vs_reference_28"]

    def describe(entry: dict[str, Any]) -> str:
        eager = entry["eager"]
        if "error" in eager:
            return "error"
        pct = eager["percent_of_bf16_peak"]
        return f"{eager['images_per_s']:.0f} img/s" + (f" ({pct:.1f}% peak)" if pct else "")

    note = (
        f"{result['device']}: medflow {side['images_per_s_medflow']:.0f} vs reference "
        f"{side['images_per_s_reference']:.0f} img/s; eager 28px {describe(r28)}, "
        f"224px {describe(r224)}"
    )
    rows = [row("gpu: ResNet-18 28x28 MedMNIST reference / medflow", side["speedup"], None, note)]
    write_json(
        "gpu",
        {"description": __doc__, "quick": options.quick, **result, "rows": rows},
        options,
    )
    return rows
