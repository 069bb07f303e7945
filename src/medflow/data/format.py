"""The prepared-data contract every later stage reads.

A prepared dataset is a folder with one safetensors file per split (tensors ``x``,
``y`` and ``index``) and ``meta.json``. Files are written under temporary names and
renamed into place, meta.json last, so a failed run never leaves a half-written
dataset and never damages one prepared earlier. safetensors is used because its
bytes depend only on the arrays (no timestamps, unlike .npz), so the same config
and seed give byte-identical files, and loading it cannot execute code. Each split file's
SHA-256 is recorded in meta.json and checked whenever the split is loaded, so a file
replaced or damaged after prepare is named instead of trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from medflow.data.base import SPLITS, SourceData, Split
from medflow.errors import DataError
from medflow.layout import Layout
from medflow.runtime.io import atomic_write_bytes

FORMAT_VERSION = 2  # 2: per-split sha256 in meta.json


def normalisation_stats(train: Split, kind: str) -> dict[str, list[float]]:
    """Mean and std per channel (images, volumes, sequences) or per feature (tables), from
    train only. Volumes are summed per channel in float64 one channel at a time, so a 64^3 set
    never takes a float64 copy of the whole split."""
    if kind == "volume":
        return _channel_stats(train.x)
    x = train.x.astype(np.float64)
    axes = {"image": (0, 2, 3), "sequence": (0, 2)}.get(kind, (0,))
    mean = x.mean(axis=axes)
    std = x.std(axis=axes)
    std[std == 0] = 1.0  # a constant feature carries no signal; avoid dividing by zero
    return {"mean": mean.tolist(), "std": std.tolist()}


def _channel_stats(x: np.ndarray, chunk: int = 256) -> dict[str, list[float]]:
    """Per-channel mean and std of (N, C, ...) data from exact integer or float64 sums over
    chunks of examples (the same values as numpy's mean/std up to float64 rounding)."""
    count = x.shape[0] * int(np.prod(x.shape[2:]))
    total = np.zeros(x.shape[1], dtype=np.float64)
    squares = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].astype(np.float64)
        axes = (0, *range(2, part.ndim))
        total += part.sum(axis=axes)
        squares += np.square(part).sum(axis=axes)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    std[std == 0] = 1.0
    return {"mean": mean.tolist(), "std": std.tolist()}


def _class_counts(split: Split, task: str, n_classes: int) -> list[int] | None:
    if task in ("binary", "multiclass"):
        return np.bincount(split.y.astype(np.int64), minlength=n_classes).tolist()
    if task == "multilabel":
        return split.y.sum(axis=0).astype(np.int64).tolist()
    return None


def build_meta(name: str, data: SourceData, splits: dict[str, Split], config: dict) -> dict:
    train = splits["train"]
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "source": config["source"],
        "task": data.task,
        "kind": data.kind,
        "input_shape": list(train.x.shape[1:]),
        "channels": (
            int(train.x.shape[1]) if data.kind in ("image", "sequence", "volume") else None
        ),
        "length": int(train.x.shape[2]) if data.kind == "sequence" else None,
        "sampling_rate": data.sampling_rate,
        "x_dtype": str(train.x.dtype),
        "y_dtype": str(train.y.dtype),
        "class_names": data.class_names,
        "n_classes": len(data.class_names),
        "feature_names": data.feature_names,
        "split_sizes": {s: len(splits[s]) for s in SPLITS},
        "class_counts": {
            s: _class_counts(splits[s], data.task, len(data.class_names)) for s in SPLITS
        },
        "normalisation": normalisation_stats(train, data.kind),
        "splits_from_source": data.has_own_splits,
        "notes": data.notes,
        "config": config,
    }


def write_prepared(out_dir: Path, splits: dict[str, Split], meta: dict) -> dict:
    """Write the split files and meta.json atomically; returns the final meta."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    digest = hashlib.sha256()
    split_sha256 = {}
    try:
        for split in SPLITS:
            final = Layout.split_file(out_dir, split)
            tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            part = splits[split]
            save_file(
                {
                    "x": np.ascontiguousarray(part.x),
                    "y": np.ascontiguousarray(part.y),
                    "index": np.ascontiguousarray(part.index),
                },
                str(tmp),
            )
            payload = tmp.read_bytes()
            digest.update(split.encode() + payload)
            split_sha256[split] = hashlib.sha256(payload).hexdigest()
            staged.append((tmp, final))
        meta = {**meta, "content_hash": digest.hexdigest()[:16], "split_sha256": split_sha256}
        # meta.json marks a complete dataset: drop the old one before swapping files in.
        Layout.meta_file(out_dir).unlink(missing_ok=True)
        for tmp, final in staged:
            os.replace(tmp, final)
        atomic_write_bytes(Layout.meta_file(out_dir), (json.dumps(meta, indent=2) + "\n").encode())
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return meta


_SAFETENSORS_DTYPES = {
    "U8": "uint8",
    "I8": "int8",
    "U16": "<u2",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "BOOL": "bool",
}


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the byte offset where its data begin."""
    with path.open("rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return header, 8 + size


@dataclass(frozen=True)
class PreparedDataset:
    """Read side of the contract: metadata plus lazy split loading."""

    root: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> PreparedDataset:
        root = Path(root)
        meta_path = Layout.meta_file(root)
        if not meta_path.exists():
            raise DataError(
                f"no prepared dataset at {root} ({meta_path.name} missing); run prepare"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{meta_path}: format_version {meta.get('format_version')} is not "
                f"{FORMAT_VERSION}; prepare the dataset again"
            )
        return cls(root, meta)

    @property
    def content_hash(self) -> str:
        return self.meta["content_hash"]

    def load(self, split: str) -> Split:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        path = Layout.split_file(self.root, split)
        self._verify(split, path)
        try:
            arrays = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise DataError(
                f"prepared split {path} is unreadable ({exc}); delete {self.root} and run the "
                "workflow again"
            ) from None
        return Split(arrays["x"], arrays["y"], arrays["index"])

    def _verify(self, split: str, path: Path) -> None:
        """The split file must be the one prepare wrote (its sha256 in meta.json)."""
        try:
            with path.open("rb") as fh:
                actual = hashlib.file_digest(fh, "sha256").hexdigest()
        except FileNotFoundError:
            raise DataError(f"prepared split missing: {path}; run prepare again") from None
        if actual != self.meta["split_sha256"][split]:
            raise DataError(
                f"prepared split {path} is not the file prepare wrote (its sha256 differs from "
                f"{Layout.meta_file(self.root)}); delete {self.root} and run the workflow again"
            )

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Standardise with the train-split statistics recorded in meta.json: one float32
        array, computed in place (no float temporaries of the whole input)."""
        stats = self.meta["normalisation"]
        mean = np.asarray(stats["mean"], dtype=np.float32)
        std = np.asarray(stats["std"], dtype=np.float32)
        trailing = {"image": 2, "volume": 3, "sequence": 1}.get(self.meta["kind"], 0)
        mean, std = mean.reshape(-1, *[1] * trailing), std.reshape(-1, *[1] * trailing)
        out = x.astype(np.float32)
        out -= mean
        out /= std
        return out

    def load_normalised(self, split: str, chunk_mb: int = 64) -> tuple[np.ndarray, Split]:
        """``normalise(load(split).x)`` and the split with an empty x, without holding the
        split's raw x beside its float copy: x is read from the (verified) file in chunks of
        examples straight into the one float32 array. For 64^3 volumes this keeps the peak
        at the float copy instead of the float copy plus the uint8 split."""
        path = Layout.split_file(self.root, split)
        self._verify(split, path)
        header, data_start = _safetensors_header(path)
        info = header["x"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        per_example = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        out = np.empty(shape, dtype=np.float32)
        rows = max(1, (chunk_mb << 20) // max(per_example * dtype.itemsize, 1))
        begin = data_start + info["data_offsets"][0]
        with path.open("rb") as fh:
            for start in range(0, shape[0], rows):
                n = min(rows, shape[0] - start)
                fh.seek(begin + start * per_example * dtype.itemsize)
                part = np.fromfile(fh, dtype=dtype, count=n * per_example)
                out[start : start + n] = self.normalise(part.reshape(n, *shape[1:]))
        with safe_open(str(path), framework="np") as tensors:
            y, index = tensors.get_tensor("y"), tensors.get_tensor("index")
        return out, Split(np.empty((len(y), 0), dtype=dtype), y, index)
