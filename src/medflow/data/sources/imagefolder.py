"""torchvision's ImageFolder layout: root/<class>/<image>, optionally split folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from medflow.data.base import SPLITS, SourceData, Split, pool
from medflow.data.pixels import to_uint8
from medflow.errors import DataError

# PIL modes of more than 8 bits per pixel: read at their own depth, then mapped to uint8.
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass(frozen=True)
class ImageFolderOptions:
    root: str
    image_size: int = 28
    channels: int = 1
    value_range: list[float] | None = None


def _scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    try:
        classes, class_to_idx = find_classes(str(folder))
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise DataError(f"imagefolder: {folder}: {exc}".replace("\n", " ")) from None
    return classes, samples


def _deep_pixels(img: Image.Image, path: str, opts: ImageFolderOptions) -> np.ndarray:
    """A 16-bit, 32-bit or float grayscale image resized at its own depth, then to uint8."""
    values = np.asarray(img)
    if img.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
        values = values.astype(np.uint16)  # 16-bit files that PIL opens as 32-bit "I"
    size = (opts.image_size, opts.image_size)
    resized = np.asarray(
        Image.fromarray(values.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    )
    if np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        resized = np.clip(np.round(resized), info.min, info.max).astype(values.dtype)
    pixels = to_uint8(resized, f"imagefolder: {path}", opts.value_range)
    return pixels[None] if opts.channels == 1 else np.repeat(pixels[None], 3, axis=0)


def _read_image(path: str, opts: ImageFolderOptions) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode in _DEEP_MODES:
                return _deep_pixels(img, path, opts)
            img = img.convert("L" if opts.channels == 1 else "RGB")
            img = img.resize((opts.image_size, opts.image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"imagefolder: cannot read image {path}: {exc}") from None
    return pixels[None] if opts.channels == 1 else pixels.transpose(2, 0, 1)


def _load_folder(
    folder: Path, opts: ImageFolderOptions
) -> tuple[list[str], np.ndarray, np.ndarray]:
    classes, samples = _scan(folder)
    shape = (len(samples), opts.channels, opts.image_size, opts.image_size)
    images = np.empty(shape, dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        images[i] = _read_image(path, opts)
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return classes, images, labels


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = ImageFolderOptions(**options)
    root = Path(opts.root)
    if not root.is_dir():
        raise DataError(f"imagefolder: folder not found: {root}")
    if all((root / s).is_dir() for s in SPLITS):
        loaded = {s: _load_folder(root / s, opts) for s in SPLITS}
        classes = loaded["train"][0]
        for s in SPLITS:
            if loaded[s][0] != classes:
                raise DataError(
                    f"imagefolder: {root / s} has classes {loaded[s][0]}, "
                    f"but {root / 'train'} has {classes}"
                )
        splits = {
            s: Split(x, y, np.arange(len(y), dtype=np.int64)) for s, (_, x, y) in loaded.items()
        }
    else:
        classes, images, labels = _load_folder(root, opts)
        splits = pool(images, labels)
    task = "binary" if len(classes) == 2 else "multiclass"
    if len(classes) < 2:
        raise DataError(f"imagefolder: {root} has one class folder; a classifier needs two")
    return SourceData(task=task, kind="image", class_names=classes, splits=splits)
