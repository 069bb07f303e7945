"""bf16 on the CPU: medflow's training loop in float32 and under bf16 autocast, side by side.

``train.amp: auto`` turns bf16 on for 1-D/2-D convolution models where the CPU has bf16
hardware (AVX512-BF16 or AMX). Here each case trains the same seeded model on the same
data through ``medflow.ml.loop.train`` with ``amp: false`` and ``amp: true`` in interleaved
rounds; the ratio is float32 time over bf16 time (the speed-up; goal >= 1.7). Each row also
says what ``auto`` picks for that model and batch (bf16 from 32 M forward multiply-adds per
step), so the cases below the threshold show why it is there.

Compute efficiency: achieved training FLOP/s (3x the analytic forward FLOPs of the model's
convolutions and linear layers, per image, times images/s) over this machine's matmul peak
in the same dtype (a 2048x2048 matmul on the same threads), so that the two dtypes are
judged against what their own units can do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from bench.common import Options, interleaved_many, row, write_json
from medflow.ml.device import cpu_has_bf16, use_bf16
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import ModelConfig, build_model
from medflow.ml.optim import OptimConfig
from medflow.ml.work import forward_macs

GOAL = ">= 1.7"
N_CLASSES = 10
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Case:
    name: str
    model: dict[str, Any]
    input_shape: tuple[int, ...]
    batch: int
    n_train: int

    def run_config(self, amp: bool, batch: int) -> RunConfig:
        return RunConfig(
            model=ModelConfig.from_schema(**self.model),
            optim=OptimConfig.from_schema(name="adam", lr=1e-3, schedule="constant"),
            train=TrainConfig.from_schema(
                epochs=1, batch_size=batch, patience=0, device="cpu", seed=0, amp=amp
            ),
        )


CASES = (
    # the default config's digits study: CNN width 32, depth 2 on 8x8 digits, batch 32
    Case("digits CNN 8x8", {"arch": "cnn", "width": 32, "depth": 2}, (1, 8, 8), 32, 2048),
    # the default config's ECG cnn1d on 128 samples: refined at batch 16, pretrained at 128
    Case("ECG cnn1d batch 16", {"arch": "cnn1d", "width": 16, "depth": 3}, (1, 128), 16, 1024),
    Case("ECG cnn1d batch 128", {"arch": "cnn1d", "width": 16, "depth": 3}, (1, 128), 128, 2048),
    # config/medmnist.yaml's CNN (width 32, depth 3) at 28x28, MedMNIST's batch of 128
    Case("CNN w32 28x28", {"arch": "cnn", "width": 32, "depth": 3}, (1, 28, 28), 128, 1024),
    Case("ResNet-18 28x28", {"arch": "resnet18"}, (3, 28, 28), 128, 128),
)


def _data(case: Case, n_train: int) -> TrainData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 64, *case.input_shape, generator=gen)
    y = torch.randint(0, N_CLASSES, (n_train + 64,), generator=gen)
    return TrainData("multiclass", N_CLASSES, x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def matmul_peak_flops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a size x size matmul in ``dtype`` on the current threads (best of repeats)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up: oneDNN/MKL kernel selection
    best = min(_timed_matmul(a, b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed_matmul(a: torch.Tensor, b: torch.Tensor) -> float:
    started = time.perf_counter()
    a @ b
    return time.perf_counter() - started


def bench_case(case: Case, rounds: int, quick: bool) -> dict[str, Any]:
    batch = 16 if quick else case.batch  # --quick checks the code on 2 tiny batches
    n_train = 2 * batch if quick else case.n_train
    data = _data(case, n_train)
    results: dict[str, Any] = {}

    def contender(amp: bool):
        def once() -> None:
            results[amp] = train(case.run_config(amp, batch), data)

        return once

    timing = interleaved_many({"fp32": contender(False), "bf16": contender(True)}, rounds, "bf16")
    assert results[True].precision == "bfloat16" and results[False].precision == "float32"
    model = build_model(case.run_config(False, batch).model, case.input_shape, N_CLASSES)
    macs = forward_macs(model, case.input_shape)
    train_flops_per_image = 3 * 2 * macs
    epoch_s = timing["median_s"]  # one epoch: the training steps and a 64-image validation
    return {
        "case": case.name,
        "batch": batch,
        "n_train": n_train,
        "train_gflops_per_image": train_flops_per_image / 1e9,
        "forward_macs_per_step": macs * batch,
        "auto_picks": "bf16" if use_bf16("auto", CPU, model, case.input_shape, batch) else "fp32",
        "timing": timing,
        "images_per_s": {name: n_train / s for name, s in epoch_s.items()},
        "ratio_fp32_over_bf16": timing["ratio_over_baseline"]["fp32"]["median"],
    }


def run(options: Options) -> list[dict[str, Any]]:
    peaks = {
        "fp32": matmul_peak_flops(torch.float32, 512 if options.quick else 2048),
        "bf16": matmul_peak_flops(torch.bfloat16, 512 if options.quick else 2048),
    }
    cases = [bench_case(case, options.rounds, options.quick) for case in CASES]
    for case in cases:
        case["efficiency"] = {
            name: case["images_per_s"][name] * case["train_gflops_per_image"] * 1e9 / peaks[name]
            for name in ("fp32", "bf16")
        }
    write_json(
        "cpu_bf16",
        {
            "cpu_has_bf16": cpu_has_bf16(),
            "matmul_peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
            "cases": cases,
        },
        options,
    )
    rows = []
    for case in cases:
        spread = case["timing"]["ratio_over_baseline"]["fp32"]
        eff = case["efficiency"]
        rows.append(
            row(
                f"bf16 CPU: {case['case']} fp32/bf16 time",
                case["ratio_fp32_over_bf16"],
                GOAL if cpu_has_bf16() else None,
                f"auto picks {case['auto_picks']} "
                f"({case['forward_macs_per_step'] / 1e6:.0f} M MACs per step); "
                f"median of {options.rounds} rounds "
                f"(range {spread['min']:.2f}-{spread['max']:.2f}); "
                f"{case['images_per_s']['bf16']:.0f} vs {case['images_per_s']['fp32']:.0f} img/s; "
                f"{eff['bf16']:.1%} of the bf16 matmul peak ({peaks['bf16'] / 1e9:.0f} GFLOP/s), "
                f"fp32 {eff['fp32']:.1%} of {peaks['fp32'] / 1e9:.0f}",
            )
        )
    return rows
