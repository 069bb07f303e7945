"""Training batches: device-resident tensors batched by index, or a DataLoader for large data,
and whole-batch augmentation. Shuffles depend only on (seed, epoch), so resuming repeats them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def _epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    # Depends only on (seed, epoch), so a resumed run shuffles exactly as an uninterrupted one.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen).to(device)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """``flip`` (horizontal, half the images) or ``noise`` (+0.1 N(0, 1)) on image batches."""
    if kind == "none" or x.dim() != 4:
        return x
    if kind == "flip":
        flip = torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(-1), x)
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
    return x + 0.1 * noise


class Batches:
    """Index batches over device-resident tensors, or a DataLoader for large data."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        *,
        batch_size: int,
        seed: int,
        resident_max_mb: int,
    ):
        self.device, self.batch_size, self.seed = device, batch_size, seed
        self.resident = x.element_size() * x.nelement() <= resident_max_mb * 2**20
        if self.resident:
            self.x, self.y = x.to(device), y.to(device)
        else:
            self.x, self.y = x, y
            log.info(
                "data exceed resident_max_mb=%d: streaming through a DataLoader", resident_max_mb
            )

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.y), self.batch_size
        if self.resident:
            order = _epoch_permutation(n, self.seed, epoch, self.device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                # index_select: a plain row gather, ~3x faster on CPU than x[idx] indexing.
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
            return
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(self.x, self.y),
            batch_size=bs,
            shuffle=True,
            generator=gen,
            pin_memory=self.device.type == "cuda",
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
