"""Where and how training runs: device choice, intra-op threads, bf16 autocast, memory format."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from medflow.errors import MedflowError
from medflow.ml.work import forward_macs


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch ops on ``n`` intra-op threads, restoring the caller's setting afterwards.

    Tiny models (the lecture's XOR MLP, test models) run faster on one thread: thread
    hand-offs cost more than their arithmetic, and collapse when the machine is busy.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pick_device(requested: str = "auto") -> torch.device:
    """``train.device`` as a torch device. An explicit CUDA device is checked here, in the
    first job that trains: on a cluster the host that validates the config has no GPU."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda":
            _check_cuda(requested, device)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_cuda(requested: str, device: torch.device) -> None:
    if not torch.cuda.is_available():
        raise MedflowError(
            f"train.device: {requested!r}, but this machine has no usable CUDA GPU "
            "(torch.cuda.is_available() is false); use device: auto or cpu"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise MedflowError(
            f"train.device: {requested!r}, but this machine has {count} CUDA GPU(s) "
            f"(cuda:0 to cuda:{count - 1})"
        )


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX), as torch's
    own CPU feature detection reports it; elsewhere bf16 would be emulated, and slower."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


CPU_BF16_MIN_MACS_PER_STEP = 32 * 10**6


def use_bf16(
    amp: bool | str,
    device: torch.device,
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int,
) -> bool:
    """``train.amp`` resolved for this device, model and batch: whether training runs under
    bf16 autocast.

    ``auto`` turns it on on CUDA, and on CPUs with bf16 hardware for models with 1-D or 2-D
    convolutions whose training step does at least CPU_BF16_MIN_MACS_PER_STEP forward
    multiply-accumulates (per input times batch size). Measured through ``train()`` on a
    2-core AVX512-BF16 CPU (fp32 time / bf16 time): a width-32 CNN at 28x28, batch 128 (950 M
    MACs per step) 1.81; width 16 (130 M) 1.56; cnn1d on 128 samples, batch 128 (65 M) 1.50;
    but the same cnn1d at batch 16 (8 M) 1.10 and the digits CNN at 8x8, batch 32 (10 M)
    0.96: below ~30 M the casts around each small convolution cost what bf16 saves. An MLP
    trained at 0.89x and an LSTM at 0.94x. Volume models stay float32 on a CPU: oneDNN 3.12's
    bf16 Conv3d backward gave different gradients run to run on 2x2x2 feature maps (the last
    stage of resnet18_3d at 12^3), and once a NaN.
    """
    if amp is False or device.type not in ("cuda", "cpu"):
        return False
    if amp is True or device.type == "cuda":
        return True
    convs = {type(m) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)}
    if not (cpu_has_bf16() and convs & {nn.Conv1d, nn.Conv2d}) or nn.Conv3d in convs:
        return False
    return forward_macs(model, input_shape) * batch_size >= CPU_BF16_MIN_MACS_PER_STEP


def use_channels_last(
    model: nn.Module, device: torch.device, bf16: bool, input_shape: tuple[int, ...]
) -> bool:
    """Train images in channels_last: with bf16 on CUDA, and on CPU for models with convs;
    volumes in channels_last_3d with bf16 on CUDA (on CPU they stay contiguous: not measured).

    On CPU, oneDNN's channels_last convolution, batch norm and max-pool kernels made a
    small CNN's training step ~1.6x faster at 28x28 (bench.data_path); models without
    convolutions gain nothing.
    """
    if len(input_shape) == 4:  # volumes: channels_last_3d with bf16 on CUDA only
        return device.type == "cuda" and bf16
    if len(input_shape) != 3:
        return False
    if device.type == "cuda":
        return bf16
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def memory_format(input_shape: tuple[int, ...]) -> torch.memory_format:
    """The channels-last format for inputs of ``input_shape``: 3-D for volumes (C, D, H, W)."""
    return torch.channels_last_3d if len(input_shape) == 4 else torch.channels_last


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16`` (see use_bf16); a no-op context otherwise
    (nullcontext: a disabled torch.autocast still cost ~40 us a step to enter and leave)."""
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
