"""Whole-batch augmentation of (N, C, D, H, W) volumes, drawn from the loop's seeded generator.

``flip3d`` flips each volume along each of the three spatial axes with probability 1/2
(eight outcomes per volume); ``rot90_3d`` rotates each volume by a random multiple of 90
degrees in each of the three planes (D-H, D-W, H-W) in turn, only in planes whose two sides
are equal so the shape is kept; ``volume`` applies both. A flip and a 90-degree rotation
move voxels without interpolation, so intensities are kept exactly; on MedMNIST's 3-D sets
(organs excepted, where left and right are labels) they are label-preserving. The draws are
whole-batch tensor ops: one ``torch.where`` per axis and one masked rotation per plane and
angle, so the cost does not grow with a Python loop over volumes. Other kinds leave volumes
unchanged, as volume kinds leave images and series.
"""

from __future__ import annotations

import torch

VOLUME_AUGMENTS: tuple[str, ...] = ("flip3d", "rot90_3d", "volume")
_AXES = (-3, -2, -1)  # D, H, W
_PLANES = ((-3, -2), (-3, -1), (-2, -1))


def _draw(n: int, gen: torch.Generator, high: int) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=gen, device=gen.device)


def _flips(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for axis in _AXES:
        flip = (_draw(len(x), gen, 2) == 1).to(x.device).view(-1, 1, 1, 1, 1)
        x = torch.where(flip, x.flip(axis), x)
    return x


def _rotations(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for plane in _PLANES:
        quarter_turns = _draw(len(x), gen, 4).to(x.device)  # drawn for every plane: seeded
        if x.shape[plane[0]] != x.shape[plane[1]]:
            continue  # a non-square plane would change the volume's shape
        out = x.clone()
        for k in (1, 2, 3):
            rows = torch.nonzero(quarter_turns == k).flatten()
            if len(rows):
                out[rows] = torch.rot90(x.index_select(0, rows), k, plane)
        x = out
    return x


def augment_volume(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """``x`` augmented by ``kind`` (one of VOLUME_AUGMENTS); unchanged if it is not a batch of
    volumes or ``kind`` is not a volume augmentation."""
    if x.dim() != 5 or kind not in VOLUME_AUGMENTS:
        return x
    if kind in ("flip3d", "volume"):
        x = _flips(x, gen)
    if kind in ("rot90_3d", "volume"):
        x = _rotations(x, gen)
    return x
