"""The UCR/UEA time-series classification archive, read from a local root.

``<root>/<name>/<name>_TRAIN.<ext>`` and ``_TEST.<ext>`` in one of the archive's formats:
``.ts`` (sktime/aeon, univariate and multivariate), ``.tsv`` (UCR 2018, tab-separated,
label first), ``.txt`` (the older whitespace-separated files, label first) and ``.arff``
(univariate, read with scipy). The archive's train/test split is kept; a stratified,
seeded validation split is carved from TRAIN. In .tsv/.txt rows, trailing NaNs pad a
shorter series (the UCR 2018 convention for variable lengths); any other NaN or ``?`` is a
missing value. The .ts parser is written here because aeon/sktime pull in numba and pin
scikit-learn; the format is a few header tags and one series per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from medflow.data.base import SourceData, Split
from medflow.errors import DataError

FORMATS = ("ts", "tsv", "txt", "arff")


@dataclass(frozen=True)
class UcrOptions:
    """Every value from the schema's $defs entry (defaults live there only)."""

    root: str
    name: str
    format: str
    val_fraction: float
    unequal_length: str
    length: int | None
    missing: str


@dataclass
class RawSeries:
    """Series of one file as read: each (C, T_i) float64, with its label and line number."""

    path: Path
    series: list[np.ndarray]
    labels: list[str]
    lines: list[int]
    declared_labels: list[str] | None = None


def _files(opts: UcrOptions) -> tuple[Path, Path, str]:
    folder = Path(opts.root) / opts.name
    formats = FORMATS if opts.format == "auto" else (opts.format,)
    for ext in formats:
        train, test = (folder / f"{opts.name}_{s}.{ext}" for s in ("TRAIN", "TEST"))
        if train.is_file() or test.is_file():
            for path in (train, test):
                if not path.is_file():
                    raise DataError(f"ucr: file not found: {path}")
            return train, test, ext
    wanted = " or ".join(f"{opts.name}_TRAIN.{ext}" for ext in formats)
    raise DataError(f"ucr: file not found: {folder / wanted}")


def _floats(text: str, path: Path, line: int) -> np.ndarray:
    try:
        return np.array([np.nan if v in ("?", "") else float(v) for v in text], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"ucr: {path} line {line}: not a number ({exc})") from None


def _trim_padding(values: np.ndarray) -> np.ndarray:
    """Drop trailing NaNs (variable-length padding) of a (C, T) series."""
    finite = np.flatnonzero(~np.isnan(values).all(axis=0))
    return values[:, : finite[-1] + 1] if finite.size else values[:, :0]


def _read_delimited(path: Path, sep: str | None) -> RawSeries:
    raw = RawSeries(path, [], [], [])
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.strip().split(sep) if sep else line.split()
        if not line.strip():
            continue
        if len(fields) < 2:
            raise DataError(f"ucr: {path} line {number}: a label and at least one value expected")
        raw.labels.append(_label(fields[0].strip()))
        raw.series.append(_trim_padding(_floats(fields[1:], path, number)[None]))
        raw.lines.append(number)
    return raw


def _label(text: str) -> str:
    """'1.0000000e+00' (the old .txt files) and '1' are the same class."""
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


class _TsHeader:
    def __init__(self, path: Path):
        self.path = path
        self.tags: dict[str, str] = {}

    def flag(self, tag: str) -> bool | None:
        value = self.tags.get(tag)
        return None if value is None else value.split()[0].lower() == "true"

    def integer(self, tag: str, line: int) -> int | None:
        value = self.tags.get(tag)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise DataError(
                f"ucr: {self.path} line {line}: @{tag} {value!r} is not an integer"
            ) from None

    def class_labels(self) -> list[str] | None:
        value = self.tags.get("classlabel")
        if value is None or not self.flag("classlabel"):
            return None
        return [_label(v) for v in value.split()[1:]]


def _read_ts(path: Path) -> RawSeries:
    header, raw, in_data = _TsHeader(path), RawSeries(path, [], [], []), False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not in_data:
            if not text.startswith("@"):
                raise DataError(f"ucr: {path} line {number}: expected a @tag or @data")
            tag, _, value = text[1:].partition(" ")
            if tag.lower() == "data":
                in_data = _check_ts_header(header, number)
                raw.declared_labels = header.class_labels()
            else:
                header.tags[tag.lower()] = value.strip()
            continue
        dims = text.split(":")
        if len(dims) < 2:
            raise DataError(f"ucr: {path} line {number}: expected values:...:label")
        values = [_floats(d.split(","), path, number) for d in dims[:-1]]
        lengths = {len(v) for v in values}
        if len(lengths) > 1:
            raise DataError(
                f"ucr: {path} line {number}: dimensions of unequal lengths {sorted(lengths)}"
            )
        raw.series.append(np.stack(values))
        raw.labels.append(_label(dims[-1].strip()))
        raw.lines.append(number)
        _check_ts_line(header, raw, number)
    if not in_data:
        raise DataError(f"ucr: {path}: no @data section")
    return raw


def _check_ts_header(header: _TsHeader, line: int) -> bool:
    path = header.path
    if header.flag("timestamps"):
        raise DataError(f"ucr: {path}: @timeStamps true is not supported; export values only")
    if header.class_labels() is None:
        raise DataError(
            f"ucr: {path} line {line}: the header declares no class labels "
            "(@classLabel true <labels...>); medflow needs labelled series"
        )
    header.integer("serieslength", line)
    header.integer("dimensions", line)
    return True


def _check_ts_line(header: _TsHeader, raw: RawSeries, line: int) -> None:
    """The header must agree with every data line."""
    path, series, label = header.path, raw.series[-1], raw.labels[-1]
    if header.flag("univariate") and series.shape[0] != 1:
        raise DataError(
            f"ucr: {path} line {line}: @univariate true but the line has {series.shape[0]} "
            "dimensions"
        )
    dims = header.integer("dimensions", line)
    if dims is not None and series.shape[0] != dims:
        raise DataError(
            f"ucr: {path} line {line}: @dimensions {dims} but the line has {series.shape[0]}"
        )
    length = header.integer("serieslength", line)
    if header.flag("equallength") and length is not None and series.shape[1] != length:
        raise DataError(
            f"ucr: {path} line {line}: @seriesLength {length} but the series has "
            f"{series.shape[1]} values"
        )
    if label not in raw.declared_labels:
        raise DataError(
            f"ucr: {path} line {line}: label {label!r} is not among the @classLabel labels "
            f"{' '.join(raw.declared_labels)}"
        )


def _read_arff(path: Path) -> RawSeries:
    from scipy.io import arff

    try:
        data, meta = arff.loadarff(path)
    except (arff.ArffError, ValueError, NotImplementedError) as exc:
        raise DataError(f"ucr: {path}: not a readable univariate .arff ({exc})") from None
    names = meta.names()
    kinds = meta.types()
    if kinds[-1] != "nominal":
        raise DataError(f"ucr: {path}: the last attribute '{names[-1]}' is not a nominal class")
    values = np.stack([data[n].astype(np.float64) for n in names[:-1]], axis=1)
    labels = [_label(v.decode() if isinstance(v, bytes) else str(v)) for v in data[names[-1]]]
    declared = [_label(v) for v in meta[names[-1]][1]]
    bad = [i for i, label in enumerate(labels) if label not in declared]
    if bad:
        raise DataError(f"ucr: {path}: row {bad[0] + 1}: label {labels[bad[0]]!r} is missing")
    return RawSeries(
        path,
        [_trim_padding(v[None]) for v in values],
        labels,
        list(range(1, len(labels) + 1)),
        declared,
    )


def _read(path: Path, ext: str) -> RawSeries:
    if ext == "ts":
        raw = _read_ts(path)
    elif ext == "arff":
        raw = _read_arff(path)
    else:
        raw = _read_delimited(path, "\t" if ext == "tsv" else None)
    if not raw.series:
        raise DataError(f"ucr: {path} holds no series")
    return raw


def _fill_missing(raw: RawSeries, opts: UcrOptions) -> None:
    for i, series in enumerate(raw.series):
        gaps = np.isnan(series)
        if not gaps.any():
            continue
        if opts.missing == "error":
            raise DataError(
                f"ucr: {raw.path} line {raw.lines[i]}: {int(gaps.sum())} missing value(s); "
                "set options.missing: interpolate"
            )
        for row, gap in zip(series, gaps, strict=True):
            if gap.all():
                raise DataError(f"ucr: {raw.path} line {raw.lines[i]}: a dimension has no values")
            known = np.flatnonzero(~gap)
            row[gap] = np.interp(np.flatnonzero(gap), known, row[known])


def _to_length(raw: list[RawSeries], opts: UcrOptions) -> tuple[int, int]:
    """The common length (T) and channels (C), checking every series against them."""
    lengths = [s.shape[1] for r in raw for s in r.series]
    channels = {s.shape[0] for r in raw for s in r.series}
    if len(channels) > 1:
        raise DataError(f"ucr: {raw[0].path.parent}: series have {sorted(channels)} dimensions")
    if opts.length is not None:
        target = opts.length
    elif opts.unequal_length == "truncate":
        target = min(lengths)
    else:
        target = max(lengths)
    if opts.unequal_length == "error":
        for r in raw:
            for series, line in zip(r.series, r.lines, strict=True):
                if series.shape[1] != target:
                    raise DataError(
                        f"ucr: {r.path} line {line}: series of length {series.shape[1]}, "
                        f"expected {target}; set options.unequal_length: pad, truncate or resample"
                    )
    return target, channels.pop()


def _fit(series: np.ndarray, target: int, how: str) -> np.ndarray:
    """Resample to ``target`` values, or cut a longer series / repeat a shorter one's last value."""
    t = series.shape[1]
    if t == target:
        return series
    if how == "resample":
        grid = np.linspace(0, t - 1, target)
        return np.stack([np.interp(grid, np.arange(t), row) for row in series])
    if t > target:
        return series[:, :target]
    return np.pad(series, ((0, 0), (0, target - t)), mode="edge")


def _class_names(raw: list[RawSeries]) -> list[str]:
    declared = raw[0].declared_labels
    if declared:
        return list(dict.fromkeys(declared))
    labels = sorted({label for r in raw for label in r.labels})
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = UcrOptions(**options)
    train_path, test_path, ext = _files(opts)
    raw = [_read(train_path, ext), _read(test_path, ext)]
    for r in raw:
        _fill_missing(r, opts)
    length, _ = _to_length(raw, opts)
    names = _class_names(raw)
    arrays, offset = [], 0
    for r in raw:
        x = np.stack([_fit(s, length, opts.unequal_length) for s in r.series]).astype(np.float32)
        y = np.array([names.index(label) for label in r.labels], dtype=np.int64)
        arrays.append(Split(x, y, np.arange(offset, offset + len(y), dtype=np.int64)))
        offset += len(y)
    train, val = _carve_val(arrays[0], opts, seed, train_path)
    return SourceData(
        task="binary" if len(names) == 2 else "multiclass",
        kind="sequence",
        class_names=names,
        splits={"train": train, "val": val, "test": arrays[1]},
        notes={"archive_format": ext, "unequal_length": opts.unequal_length},
    )


def _carve_val(train: Split, opts: UcrOptions, seed: int, path: Path) -> tuple[Split, Split]:
    rows = np.arange(len(train))
    try:
        keep, val = train_test_split(
            rows, test_size=opts.val_fraction, random_state=seed, stratify=train.y
        )
    except ValueError as exc:
        raise DataError(
            f"ucr: {path}: cannot carve a stratified val_fraction {opts.val_fraction:g} "
            f"from {len(rows)} training series: {exc}"
        ) from None
    return train.take(np.sort(keep)), train.take(np.sort(val))
