"""MedMNIST v2 / MedMNIST+ 2D and 3D datasets from local .npz files.

File names and layout follow the official release: ``<flag>.npz`` for 28x28 (28^3) and
``<flag>_<size>.npz`` for the MedMNIST+ sizes, each with the keys below. 2-D flags hold
images (N, H, W) or (N, H, W, 3) and are prepared as (N, C, H, W) ``kind: image``; the 3-D
flags (``*mnist3d``) hold volumes (N, D, H, W) and are prepared as (N, 1, D, H, W) ``kind:
volume``. The task, label names, channel count, URLs and MD5 sums come from the
``medmnist`` package's INFO table. Nothing is downloaded unless ``options.download`` is true.
A local file is checked against the same table: its split sizes, and its MD5 where they
match, so a report says whether its numbers come from the official release (the files the
published baselines used) or from a subset, a re-save or a look-alike.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from medflow.data.base import SPLITS, SourceData, Split, Task
from medflow.data.labels import class_ids
from medflow.data.medmnist_info import medmnist_info
from medflow.data.pixels import to_uint8
from medflow.errors import DataError

log = logging.getLogger(__name__)

KEYS = tuple(f"{split}_{part}" for split in SPLITS for part in ("images", "labels"))
# ordinal-regression (RetinaMNIST) is scored as multi-class in the MedMNIST benchmark.
TASKS: dict[str, Task] = {
    "binary-class": "binary",
    "multi-class": "multiclass",
    "ordinal-regression": "multiclass",
    "multi-label, binary-class": "multilabel",
}


@dataclass(frozen=True)
class MedmnistOptions:
    flag: str
    root: str = "data/medmnist"
    size: int = 28
    download: bool = False
    url: str | None = None
    value_range: list[float] | None = None


def _size_suffix(size: int) -> str:
    """28 (28x28, 28^3) has none; MedMNIST+ sizes name their files and INFO keys ``_<size>``."""
    return "" if size == 28 else f"_{size}"


def file_name(flag: str, size: int) -> str:
    return f"{flag}{_size_suffix(size)}.npz"


def _url_and_md5(opts: MedmnistOptions) -> tuple[str, str]:
    info = medmnist_info()[opts.flag]
    suffix = _size_suffix(opts.size)
    return opts.url or info[f"url{suffix}"], info[f"MD5{suffix}"]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(opts: MedmnistOptions, path: Path) -> None:
    """Download to a temporary name, check the MD5, then rename: never a partial file."""
    url, md5 = _url_and_md5(opts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.download-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, tmp.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        got = _md5(tmp)
        if got != md5:
            raise DataError(f"medmnist: download of {url} failed: MD5 {got} is not {md5}")
        os.replace(tmp, path)
    except OSError as exc:  # network and file errors alike
        raise DataError(f"medmnist: download of {url} to {path} failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"medmnist: {path} lacks key(s) {', '.join(missing)}; "
                    f"found: {', '.join(npz.files) or 'none'}"
                )
            return {k: npz[k] for k in KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"medmnist: {path} is corrupt or truncated ({exc})") from None


def _to_split(
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    n_labels: int,
    where: str,
    value_range: list[float] | None,
    volume: bool = False,
    size: int = 28,
):
    if len(images) != len(labels):
        raise DataError(f"medmnist: {where}: {len(images)} images but {len(labels)} labels")
    if volume:
        images = _volumes(images, where, size)
    elif images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise DataError(
            f"medmnist: {where}: images have shape {images.shape}, 3-D volumes; this is a 2-D "
            "flag (a 3-D file needs a *mnist3d flag)"
        )
    elif images.ndim == 3:
        images = images[:, None]  # grayscale (N, H, W)
    elif images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)  # RGB (N, H, W, 3)
    else:
        raise DataError(
            f"medmnist: {where}: images have shape {images.shape}, expected 3 or 4 dims"
        )
    labels = labels.reshape(len(labels), -1)
    if task == "multilabel":
        if labels.shape[1] != n_labels:
            raise DataError(
                f"medmnist: {where}: {labels.shape[1]} label columns, expected {n_labels}"
            )
        y = class_ids(labels, f"medmnist: {where}", n_classes=2).astype(np.float32)
    else:
        if labels.shape[1] != 1:
            raise DataError(
                f"medmnist: {where}: {labels.shape[1]} label columns, expected 1 for a {task} flag"
            )
        y = class_ids(labels[:, 0], f"medmnist: {where}", n_classes=n_labels)
    x = to_uint8(images, f"medmnist: {where}", value_range)
    return Split(x, y, np.arange(len(y), dtype=np.int64))


def is_volume_flag(flag: str) -> bool:
    """The six MedMNIST v2 3-D flags end in 3d (organmnist3d, nodulemnist3d, ...)."""
    return flag.endswith("3d")


def _volumes(images: np.ndarray, where: str, size: int) -> np.ndarray:
    """(N, D, H, W) volumes of the file's size as (N, 1, D, H, W), a view (no copy)."""
    flat = images.ndim == 3 or (
        images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] != images.shape[-1]
    )
    if flat:
        raise DataError(
            f"medmnist: {where}: images have shape {images.shape}, 2-D images; this is a "
            f"3-D flag, which needs volumes (N, {size}, {size}, {size})"
        )
    if images.ndim != 4:
        raise DataError(
            f"medmnist: {where}: images have shape {images.shape}, expected volumes "
            f"(N, {size}, {size}, {size})"
        )
    if images.shape[1:] != (size, size, size):
        raise DataError(
            f"medmnist: {where}: volumes of {'x'.join(map(str, images.shape[1:]))}, but "
            f"options.size is {size} ({size}x{size}x{size})"
        )
    return images[:, None]


def _sizes(sizes: dict[str, int]) -> str:
    return "/".join(str(sizes[s]) for s in SPLITS)


def release_check(path: Path, arrays: dict[str, np.ndarray], info: dict, size: int) -> dict:
    """The file against the INFO table: split sizes first (cheap), then the MD5 of the file.
    A mismatch is not an error (a lab may subset or re-save the release), but it is logged and
    recorded, because the published baselines hold only for the official files."""
    sizes = {s: len(arrays[f"{s}_labels"]) for s in SPLITS}
    official = {s: int(info["n_samples"][s]) for s in SPLITS}
    if sizes != official:
        verdict = (
            f"not the official release: split sizes {_sizes(sizes)} (train/val/test), "
            f"the release has {_sizes(official)}"
        )
    elif _md5(path) == info[f"MD5{_size_suffix(size)}"]:
        return {"official_release": True, "release": "the official release (MD5 matches)"}
    else:
        verdict = (
            f"official split sizes {_sizes(official)}, but the MD5 differs from the "
            "official file's (re-saved, edited or generated)"
        )
    log.warning("medmnist: %s: %s", path, verdict)
    return {"official_release": False, "release": verdict}


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = MedmnistOptions(**options)
    path = Path(opts.root) / file_name(opts.flag, opts.size)
    if not path.is_file():
        if not opts.download:
            raise DataError(
                f"medmnist: {path} not found; put the file there or set options.download: true"
            )
        _fetch(opts, path)
    arrays = _read_npz(path)
    info = medmnist_info()[opts.flag]
    task = TASKS[info["task"]]
    names = [info["label"][str(i)] for i in range(len(info["label"]))]
    splits = {
        s: _to_split(
            arrays[f"{s}_images"],
            arrays[f"{s}_labels"],
            task,
            len(names),
            f"{path} [{s}]",
            opts.value_range,
            volume=is_volume_flag(opts.flag),
            size=opts.size,
        )
        for s in SPLITS
    }
    channels = splits["train"].x.shape[1]
    if channels != info["n_channels"]:
        raise DataError(
            f"medmnist: {path} has {channels}-channel images; {opts.flag} has {info['n_channels']}"
        )
    return SourceData(
        task=task,
        kind="volume" if is_volume_flag(opts.flag) else "image",
        class_names=names,
        splits=splits,
        notes={
            "flag": opts.flag,
            "size": opts.size,
            "file": str(path),
            **release_check(path, arrays, info, opts.size),
        },
    )
