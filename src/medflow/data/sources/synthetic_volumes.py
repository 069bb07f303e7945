"""A large, seeded, procedurally generated set of labelled 3-D shapes and textures to
pretrain volume models on.

Eight classes, each a soft-edged solid drawn from a signed distance in voxels (positive
inside): a sphere, a hollow shell, a box, an elongated ellipsoid, a tube (finite cylinder),
a torus, a pair of blobs and a layered sphere (a sphere cut into parallel slabs, the
texture class). Every volume gets its own random rotation (a uniformly random orthogonal
matrix), centre, size, foreground and background intensity and Gaussian noise, so the class
is the shape, not its pose or contrast. Rendering is vectorised over chunks of volumes x
voxels; 10,000 volumes at 28^3 take a few seconds on two cores (bench numbers in the
README's volumes section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medflow.data.base import SourceData, pool

CHUNK = 256
CLASS_NAMES = [
    "sphere",
    "shell",
    "box",
    "ellipsoid",
    "tube",
    "torus",
    "blob_pair",
    "layered_sphere",
]
SPHERE, SHELL, BOX, ELLIPSOID, TUBE, TORUS, BLOB_PAIR, LAYERED = range(len(CLASS_NAMES))
EDGE = 0.75  # voxels over which an edge ramps from background to foreground


@dataclass(frozen=True)
class VolumeOptions:
    """Every value from the schema's $defs entry (defaults live there only)."""

    n_volumes: int
    size: int
    noise: float
    classes: tuple[str, ...] | None


def _rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) uniformly random orthogonal matrices (QR of Gaussian matrices, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    return (q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]).astype(np.float32)


def _signed_distance(label: int, q: np.ndarray, scale: float, rng: np.random.Generator):
    """(B, V) approximate signed distance (voxels, positive inside) of class ``label`` for
    rotated, centred voxel coordinates q (B, 3, V)."""
    b = q.shape[0]

    def draw(low: float, high: float, *shape: int) -> np.ndarray:
        return (rng.uniform(low, high, size=(b, *shape)) * scale).astype(np.float32)

    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    radius = np.sqrt(x * x + y * y + z * z)
    if label == SPHERE:
        return draw(5.0, 9.0, 1) - radius
    if label == SHELL:
        r, t = draw(6.0, 9.5, 1), draw(1.2, 2.2, 1)
        return t - np.abs(radius - r)
    if label == BOX:
        half = draw(3.5, 7.5, 3, 1)
        return np.min(half - np.abs(q), axis=1)
    if label == ELLIPSOID:
        long_axis, short = draw(8.0, 11.0, 1), draw(2.5, 4.0, 2)
        axes = np.concatenate([long_axis, short], axis=1)[:, :, None]  # (B, 3, 1)
        norm = np.sqrt(np.sum((q / axes) ** 2, axis=1))
        return (1.0 - norm) * short.min(axis=1, keepdims=True)
    if label == TUBE:
        r, half_length = draw(1.8, 3.2, 1), draw(7.0, 11.0, 1)
        return np.minimum(r - np.sqrt(x * x + y * y), half_length - np.abs(z))
    if label == TORUS:
        ring, r = draw(5.0, 7.5, 1), draw(1.5, 2.5, 1)
        return r - np.sqrt((np.sqrt(x * x + y * y) - ring) ** 2 + z * z)
    if label == BLOB_PAIR:
        r, gap = draw(2.5, 4.0, 1), draw(4.5, 7.0, 1)
        first = np.sqrt((x - gap) ** 2 + y * y + z * z)
        second = np.sqrt((x + gap) ** 2 + y * y + z * z)
        return r - np.minimum(first, second)
    if label == LAYERED:
        r, period = draw(6.5, 10.0, 1), draw(2.6, 3.6, 1)
        phase = rng.uniform(0, 2 * np.pi, size=(b, 1)).astype(np.float32)
        slabs = 1.5 * np.sin(2 * np.pi * x / period + phase)
        return np.minimum(r - radius, slabs)
    raise ValueError(f"unknown class {label}")


def _render_chunk(labels: np.ndarray, opts: VolumeOptions, rng: np.random.Generator):
    """(B, size^3) float32 intensities in [0, 1] for class ids ``labels``."""
    b, size = len(labels), opts.size
    scale = size / 28.0  # shape sizes are drawn for 28^3 and scaled with the volume
    axis = np.arange(size, dtype=np.float32) - (size - 1) / 2
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1)  # (3, V)
    centre = rng.uniform(-2.5, 2.5, size=(b, 3, 1)).astype(np.float32) * scale
    q = np.einsum("bij,bjv->biv", _rotations(b, rng), grid[None] - centre)
    distance = np.empty((b, grid.shape[1]), dtype=np.float32)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        distance[members] = _signed_distance(int(label), q[members], scale, rng)
    shape = np.clip(distance / EDGE + 0.5, 0.0, 1.0)
    background = rng.uniform(0.0, 0.3, size=(b, 1)).astype(np.float32)
    foreground = rng.uniform(0.55, 1.0, size=(b, 1)).astype(np.float32)
    volume = background + (foreground - background) * shape
    if opts.noise > 0:
        volume += opts.noise * rng.standard_normal(volume.shape, dtype=np.float32)
    return np.clip(volume, 0.0, 1.0)


def generate(opts: VolumeOptions, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Volumes (N, 1, size, size, size) uint8 and balanced labels (N,) indexing
    ``opts.classes`` (default: CLASS_NAMES), fully determined by seed."""
    rng = np.random.default_rng(seed)
    chosen = np.array([CLASS_NAMES.index(c) for c in opts.classes or CLASS_NAMES])
    labels = rng.permutation(np.arange(opts.n_volumes) % len(chosen)).astype(np.int64)
    size = opts.size
    x = np.empty((opts.n_volumes, 1, size, size, size), dtype=np.uint8)
    for start in range(0, opts.n_volumes, CHUNK):
        chunk = chosen[labels[start : start + CHUNK]]
        volumes = _render_chunk(chunk, opts, rng)
        x[start : start + len(chunk), 0] = np.rint(volumes * 255).reshape(-1, size, size, size)
    return x, labels


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = VolumeOptions(**{**options, "classes": options.get("classes")})
    x, labels = generate(opts, seed)
    names = list(opts.classes or CLASS_NAMES)
    return SourceData(
        task="binary" if len(names) == 2 else "multiclass",
        kind="volume",
        class_names=names,
        splits=pool(x, labels),
        notes={"generator": "medflow.data.sources.synthetic_volumes", "size": opts.size},
    )
