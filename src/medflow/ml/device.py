"""Where and how training runs: device choice, intra-op threads, bf16 autocast, memory format."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from medflow.errors import MedflowError


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


def use_channels_last(
    model: nn.Module, device: torch.device, amp: bool, input_shape: tuple[int, ...]
) -> bool:
    """Train images in channels_last: with bf16 (``amp``) on CUDA, and on CPU for models with convs;
    volumes in channels_last_3d with bf16 on CUDA (on CPU they stay contiguous: not measured).

    On CPU, oneDNN's channels_last convolution, batch norm and max-pool kernels made a
    small CNN's training step ~1.6x faster at 28x28 (bench.data_path); models without
    convolutions gain nothing.
    """
    if len(input_shape) == 4:  # volumes: channels_last_3d with bf16 on CUDA only
        return device.type == "cuda" and amp
    if len(input_shape) != 3:
        return False
    if device.type == "cuda":
        return amp
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def memory_format(input_shape: tuple[int, ...]) -> torch.memory_format:
    """The channels-last format for inputs of ``input_shape``: 3-D for volumes (C, D, H, W)."""
    return torch.channels_last_3d if len(input_shape) == 4 else torch.channels_last


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; a no-op context elsewhere."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"
    )
