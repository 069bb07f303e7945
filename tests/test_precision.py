"""train.amp: bf16 autocast where the hardware does bf16, float32 where asked or not worth it."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from torch import nn

from medflow.config.schema import validate_config
from medflow.errors import ConfigError
from medflow.ml.device import CPU_BF16_MIN_MACS_PER_STEP, cpu_has_bf16, use_bf16
from medflow.ml.loop import RunConfig, TrainConfig, train
from medflow.ml.models import ModelConfig, build_model
from medflow.ml.optim import OptimConfig
from medflow.ml.work import forward_macs
from tests.test_train import image_data

CPU = torch.device("cpu")


def _model(arch: str, shape: tuple[int, ...]) -> nn.Module:
    return build_model(ModelConfig.from_schema(arch=arch, width=4, depth=1), shape, 2)


def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64", reason="reads /proc/cpuinfo"
)
def test_bf16_detection_agrees_with_the_kernels_cpu_flags():
    flags = _cpuinfo_flags()
    assert cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def _auto(arch: str, shape: tuple[int, ...], batch: int, amp: bool | str = "auto", device=CPU):
    return use_bf16(amp, device, _model(arch, shape), shape, batch)


def test_auto_uses_bf16_on_cpu_only_for_1d_and_2d_convolution_models():
    has = cpu_has_bf16()
    assert _auto("cnn", (1, 28, 28), 4096) is has
    assert _auto("cnn1d", (1, 512), 4096) is has
    assert _auto("mlp", (1, 28, 28), 4096) is False
    assert _auto("lstm", (1, 512), 4096) is False
    assert _auto("cnn3d", (1, 16, 16, 16), 4096) is False
    # true forces it, false forbids it, on any model
    assert _auto("mlp", (1, 8, 8), 1, amp=True) is True
    assert _auto("cnn", (1, 28, 28), 4096, amp=False) is False
    assert _auto("mlp", (1, 8, 8), 1, device=torch.device("cuda")) is True


def test_auto_keeps_float32_on_cpu_where_a_training_step_does_little_work():
    """The threshold is on forward multiply-accumulates per step: per input times batch."""
    model, shape = _model("cnn", (1, 28, 28)), (1, 28, 28)
    per_input = forward_macs(model, shape)
    # width 4, depth 1 at 28x28: a 3x3 conv to 4 channels (same padding), then the head
    assert per_input == 28 * 28 * 4 * 9 + 4 * 2
    just_enough = -(-CPU_BF16_MIN_MACS_PER_STEP // per_input)
    assert use_bf16("auto", CPU, model, shape, just_enough) is cpu_has_bf16()
    assert use_bf16("auto", CPU, model, shape, just_enough - 1) is False
    assert use_bf16(True, CPU, model, shape, 1) is True


def _cnn_run(amp: bool | str) -> RunConfig:
    return RunConfig(
        ModelConfig.from_schema(arch="cnn", width=8, depth=2),
        OptimConfig.from_schema(name="adam", lr=1e-2, schedule="constant"),
        TrainConfig.from_schema(
            epochs=6, batch_size=16, monitor="val_auc", patience=0, seed=0, device="cpu", amp=amp
        ),
    )


def _train_watching_convs(amp: bool | str):
    """Train the CNN from seeded weights; also returns the dtypes its first conv put out."""
    data = image_data()
    torch.manual_seed(0)
    model = build_model(_cnn_run(amp).model, data.input_shape, 1)
    dtypes: set[torch.dtype] = set()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    return train(_cnn_run(amp), data, model=model), dtypes


def _without_timings(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [
        {k: v for k, v in row.items() if k not in ("epoch_time_s", "samples_per_s")}
        for row in history
    ]


def test_amp_true_trains_a_cnn_in_bf16_on_cpu_reproducibly_and_it_still_learns():
    result, dtypes = _train_watching_convs(True)
    assert result.precision == "bfloat16"
    assert torch.bfloat16 in dtypes  # training steps ran the convolution in bf16
    assert torch.float32 in dtypes  # validation on the CPU scores in float32
    assert result.best_value > 0.9, result.history
    again, _ = _train_watching_convs(True)
    assert _without_timings(again.history) == _without_timings(result.history)
    fp32, dtypes = _train_watching_convs(False)
    assert fp32.precision == "float32" and dtypes == {torch.float32}
    assert fp32.history[0]["train_loss"] != result.history[0]["train_loss"]


def test_amp_accepts_auto_true_false_and_names_the_key_otherwise():
    def config(amp):
        return {
            "datasets": {"d": {"source": "sklearn_digits"}},
            "studies": {"s": {"target": "d", "train": {"amp": amp}}},
        }

    assert validate_config(config("auto"))["studies"]["s"]["train"]["amp"] == "auto"
    assert validate_config(config(False))["studies"]["s"]["train"]["amp"] is False
    with pytest.raises(ConfigError, match=r"amp.*'bf16' is not one of: auto, True, False"):
        validate_config(config("bf16"))
