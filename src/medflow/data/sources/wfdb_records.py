"""PhysioNet WFDB records (``.hea`` + signal files, with annotation files) from a local folder.

Each annotation whose symbol is in ``options.labels`` (e.g. the MIT-BIH beat symbols
N, L, R, V, A) becomes one window of ``before_s + after_s`` seconds around its sample;
other symbols (rhythm changes, noise marks) and windows running off the record's ends are
skipped and counted in meta.json's notes. Records, not windows, are split into
train/val/test (seeded), so no record - usually one patient - is in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medflow.data.base import SPLITS, SourceData, Split
from medflow.errors import DataError


@dataclass(frozen=True)
class WfdbOptions:
    """Every value from the schema's $defs entry (defaults live there only)."""

    root: str
    labels: dict[str, str]
    records: list[str] | None
    annotator: str
    channels: list[str] | None
    before_s: float
    after_s: float
    val_fraction: float
    test_fraction: float


@dataclass
class RecordWindows:
    name: str
    x: np.ndarray  # (n, C, T)
    symbols: list[str]
    skipped: dict[str, int] = field(default_factory=dict)


def _record_names(opts: WfdbOptions, root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"wfdb: folder not found: {root}")
    names = opts.records or sorted(p.stem for p in root.glob("*.hea"))
    if not names:
        raise DataError(f"wfdb: no .hea record headers in {root}")
    for name in names:
        if not (root / f"{name}.hea").is_file():
            raise DataError(f"wfdb: file not found: {root / name}.hea (options.records)")
    return names


def _read_record(root: Path, name: str, opts: WfdbOptions):
    import wfdb

    try:
        record = wfdb.rdrecord(str(root / name), channel_names=opts.channels)
    except (ValueError, OSError, IndexError) as exc:
        raise DataError(
            f"wfdb: record {root / name}: unreadable, or its .hea contradicts its signal "
            f"file ({exc})"
        ) from None
    if record.p_signal is None or record.p_signal.shape[1] == 0:
        raise DataError(f"wfdb: record {root / name}: no signals (options.channels)")
    if opts.channels and list(record.sig_name) != list(opts.channels):
        raise DataError(
            f"wfdb: record {root / name} has channels {record.sig_name}, not {opts.channels} "
            "(options.channels)"
        )
    ann_path = root / f"{name}.{opts.annotator}"
    if not ann_path.is_file():
        raise DataError(
            f"wfdb: record {root / name} has no annotations: {ann_path} not found "
            "(options.annotator)"
        )
    try:
        ann = wfdb.rdann(str(root / name), opts.annotator)
    except (ValueError, OSError, IndexError) as exc:
        raise DataError(f"wfdb: annotations {ann_path} are unreadable ({exc})") from None
    return record, ann


def _windows(root: Path, name: str, opts: WfdbOptions) -> tuple[RecordWindows, float, list]:
    record, ann = _read_record(root, name, opts)
    fs = float(record.fs)
    before, after = round(opts.before_s * fs), round(opts.after_s * fs)
    signal = record.p_signal.T.astype(np.float32)  # (C, samples)
    out = RecordWindows(name, np.empty((0, signal.shape[0], before + after), np.float32), [])
    starts, skipped = [], {"unmapped_symbol": 0, "off_the_edge": 0, "missing_values": 0}
    for sample, symbol in zip(ann.sample, ann.symbol, strict=True):
        if symbol not in opts.labels:
            skipped["unmapped_symbol"] += 1
        elif sample - before < 0 or sample + after > signal.shape[1]:
            skipped["off_the_edge"] += 1
        elif np.isnan(signal[:, sample - before : sample + after]).any():
            skipped["missing_values"] += 1
        else:
            starts.append(sample - before)
            out.symbols.append(symbol)
    if starts:
        out.x = np.stack([signal[:, s : s + before + after] for s in starts])
    out.skipped = skipped
    return out, fs, list(record.sig_name)


def _split_records(names: list[str], opts: WfdbOptions, seed: int) -> dict[str, list[str]]:
    if len(names) < 3:
        raise DataError(f"wfdb: {len(names)} record(s) found; splitting by record needs at least 3")
    order = list(np.random.default_rng(seed).permutation(names))
    n_test = max(1, round(opts.test_fraction * len(names)))
    n_val = max(1, round(opts.val_fraction * len(names)))
    if n_test + n_val >= len(names):
        raise DataError(
            f"wfdb: val_fraction {opts.val_fraction:g} + test_fraction {opts.test_fraction:g} "
            f"of {len(names)} records leave none for training"
        )
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = WfdbOptions(**options)
    root = Path(opts.root)
    names = _record_names(opts, root)
    class_names = list(dict.fromkeys(opts.labels.values()))
    windows, rates, channels = {}, set(), None
    for name in names:
        windows[name], fs, sig_names = _windows(root, name, opts)
        rates.add(fs)
        if channels is not None and sig_names != channels:
            raise DataError(
                f"wfdb: record {root / name} has channels {sig_names}, the others {channels}; "
                "choose common ones with options.channels"
            )
        channels = sig_names
    if len(rates) > 1:
        raise DataError(f"wfdb: records in {root} have different sampling rates {sorted(rates)}")
    if not any(len(w.symbols) for w in windows.values()):
        raise DataError(
            f"wfdb: no annotation in {root} has a symbol of options.labels "
            f"({', '.join(opts.labels)})"
        )
    assignment = _split_records(names, opts, seed)
    splits, offset = {}, 0
    for split in SPLITS:
        parts = [windows[n] for n in assignment[split]]
        x = np.concatenate([p.x for p in parts])
        y = np.array(
            [class_names.index(opts.labels[s]) for p in parts for s in p.symbols], dtype=np.int64
        )
        splits[split] = Split(x, y, np.arange(offset, offset + len(y), dtype=np.int64))
        offset += len(y)
    skipped = {
        k: sum(w.skipped[k] for w in windows.values()) for k in next(iter(windows.values())).skipped
    }
    return SourceData(
        task="binary" if len(class_names) == 2 else "multiclass",
        kind="sequence",
        class_names=class_names,
        splits=splits,
        feature_names=channels,
        sampling_rate=rates.pop(),
        notes={"records": assignment, "skipped_annotations": skipped},
    )
