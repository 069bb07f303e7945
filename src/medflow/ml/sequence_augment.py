"""Whole-batch augmentation of (N, C, T) series, drawn from the loop's seeded generator.

``jitter`` adds N(0, 0.05^2) noise (inputs are standardised per channel, so 5% of a
channel's spread); ``scaling`` multiplies each series and channel by N(1, 0.1^2);
``time_shift`` moves each series by up to a tenth of its length, repeating its first or
last value into the gap (no wrap-around, which would splice the end onto the start);
``sequence`` applies all three. Image kinds leave series unchanged, as sequence kinds do
images.
"""

from __future__ import annotations

import torch

SEQUENCE_AUGMENTS: tuple[str, ...] = ("jitter", "scaling", "time_shift", "sequence")
JITTER_STD = 0.05
SCALE_STD = 0.1
MAX_SHIFT_FRACTION = 0.1


def _jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
    return x + JITTER_STD * noise.to(x.device)


def _scaling(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    shape = (x.shape[0], x.shape[1], 1)
    factor = 1 + SCALE_STD * torch.randn(shape, generator=gen, device=gen.device, dtype=x.dtype)
    return x * factor.to(x.device)


def _time_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, c, t = x.shape
    limit = int(MAX_SHIFT_FRACTION * t)
    if limit == 0:
        return x
    shift = torch.randint(-limit, limit + 1, (n, 1, 1), generator=gen, device=gen.device)
    steps = torch.arange(t, device=gen.device).view(1, 1, t)
    index = (steps - shift).clamp(0, t - 1).expand(n, c, t).to(x.device)
    return x.gather(2, index)


def augment_sequence(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """``x`` augmented by ``kind`` (one of SEQUENCE_AUGMENTS); unchanged if it is not a
    batch of series or ``kind`` is not a sequence augmentation."""
    if x.dim() != 3 or kind not in SEQUENCE_AUGMENTS:
        return x
    if kind in ("scaling", "sequence"):
        x = _scaling(x, gen)
    if kind in ("time_shift", "sequence"):
        x = _time_shift(x, gen)
    if kind in ("jitter", "sequence"):
        x = _jitter(x, gen)
    return x
