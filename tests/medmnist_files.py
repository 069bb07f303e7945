"""Generated MedMNIST files with the real layout of a flag: the keys, dtypes, shapes and
split sizes of the medmnist package's INFO table, and a learnable class signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medflow.data.medmnist_info import medmnist_info
from medflow.data.sources.medmnist_npz import file_name


def write_medmnist_flag(
    root: Path,
    flag: str,
    size: int = 28,
    seed: int = 0,
    n_samples: dict[str, int] | None = None,
) -> Path:
    """``<root>/<flag>.npz`` (or ``<flag>_<size>.npz``) as MedMNIST ships it: uint8 images
    (N, H, W) or (N, H, W, 3), volumes (N, D, H, W) for the 3-D flags, uint8 labels (N, 1)
    or (N, L) for multi-label flags. ``n_samples`` replaces the flag's split sizes (e.g.
    another set's, for a benchmark; the medmnist source then refuses an MD5 check)."""
    info = medmnist_info()[flag]
    if n_samples is not None:
        info = {**info, "n_samples": n_samples}
    rng = np.random.default_rng(seed)
    n_labels = len(info["label"])
    multilabel = info["task"].startswith("multi-label")
    arrays = {}
    for split, n in info["n_samples"].items():
        if multilabel:
            labels = (rng.random((n, n_labels)) < 0.1).astype(np.uint8)
            signal = labels[:, 0].astype(np.int16)
        else:
            labels = rng.integers(0, n_labels, size=(n, 1), dtype=np.uint8)
            signal = labels[:, 0].astype(np.int16)
        if flag.endswith("3d"):  # volumes (N, D, H, W)
            shape = (n, size, size, size)
        else:
            shape = (n, size, size) if info["n_channels"] == 1 else (n, size, size, 3)
        noise = rng.integers(0, 160, size=shape, dtype=np.int16)
        brightness = (signal * (90 // max(n_labels - 1, 1))).reshape(-1, *[1] * (len(shape) - 1))
        arrays[f"{split}_images"] = (noise + brightness).clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    root.mkdir(parents=True, exist_ok=True)
    path = root / file_name(flag, size)
    np.savez(path, **arrays)
    return path
