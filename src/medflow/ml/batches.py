"""Training batches: device-resident tensors batched by index, or a DataLoader for large data,
and whole-batch augmentation. Shuffles depend only on (seed, epoch), so resuming repeats them;
so do the weighted draws of the balanced sampler (``train.sampler``), which are the same
indices on both paths."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from medflow.ml.sequence_augment import SEQUENCE_AUGMENTS, augment_sequence
from medflow.ml.volume_augment import VOLUME_AUGMENTS, augment_volume

log = logging.getLogger(__name__)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Depends only on (seed, epoch), so a resumed run shuffles exactly as an uninterrupted one.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=_epoch_generator(seed, epoch)).to(device)


def _epoch_draw(weights: torch.Tensor, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """len(weights) indices drawn with replacement, as WeightedRandomSampler draws them."""
    gen = _epoch_generator(seed, epoch)
    return torch.multinomial(weights, len(weights), replacement=True, generator=gen).to(device)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """``flip`` (horizontal, half the images) or ``noise`` (+0.1 N(0, 1)) on image batches."""
    if x.dim() == 3 or kind in SEQUENCE_AUGMENTS:  # (N, C, T) series
        return augment_sequence(x, kind, gen)
    if x.dim() == 5 or kind in VOLUME_AUGMENTS:  # (N, C, D, H, W) volumes
        return augment_volume(x, kind, gen)
    if kind == "none" or x.dim() != 4:
        return x
    if kind == "flip":
        flip = torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(-1), x)
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
    return x + 0.1 * noise


class Batches:
    """Index batches over device-resident tensors, or a DataLoader for large data.

    ``sample_weights`` (float64, one per example; :func:`medflow.ml.imbalance.sample_weights`)
    replace the shuffle with len(y) draws with replacement in proportion to them.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        *,
        batch_size: int,
        seed: int,
        resident_max_mb: int,
        sample_weights: torch.Tensor | None = None,
    ):
        self.device, self.batch_size, self.seed = device, batch_size, seed
        if sample_weights is not None and len(sample_weights) != len(y):
            raise ValueError(f"{len(sample_weights)} sample weights for {len(y)} examples")
        self.sample_weights = sample_weights
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
            if self.sample_weights is None:
                order = _epoch_permutation(n, self.seed, epoch, self.device)
            else:
                order = _epoch_draw(self.sample_weights, self.seed, epoch, self.device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                # index_select: a plain row gather, ~3x faster on CPU than x[idx] indexing.
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
            return
        gen = _epoch_generator(self.seed, epoch)
        sampler = None
        if self.sample_weights is not None:
            # Its own generator: the loader draws a worker seed from ``gen`` before sampling,
            # and the draws should be the resident path's.
            sampler = torch.utils.data.WeightedRandomSampler(
                self.sample_weights,
                n,
                replacement=True,
                generator=_epoch_generator(self.seed, epoch),
            )
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(self.x, self.y),
            batch_size=bs,
            shuffle=sampler is None,
            sampler=sampler,
            generator=gen,
            pin_memory=self.device.type == "cuda",
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
