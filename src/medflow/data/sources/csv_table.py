"""A clinical table: one row per patient, numeric features and a named label column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.base import SourceData, pool
from medflow.errors import DataError


@dataclass(frozen=True)
class CsvOptions:
    path: str
    label: str
    features: list[str] | None = None
    task: str = "auto"
    missing: str = "error"


def _duplicate_headers(path: Path) -> list[str]:
    """Header names given more than once (pandas would rename the copies "name.1" silently)."""
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(name) for name in header.iloc[0].tolist()] if len(header) else []
    return sorted({name for name in names if names.count(name) > 1})


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"csv: file not found: {path}")
    try:
        duplicated = _duplicate_headers(path)
        if duplicated:
            raise DataError(
                f"csv: {path} names column(s) {', '.join(map(repr, duplicated))} more than "
                "once in its header; rename or remove the copies"
            )
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"csv: {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"csv: {path} is not a readable CSV: {exc}".replace("\n", " ")) from None


def _select_features(frame: pd.DataFrame, opts: CsvOptions, path: Path) -> list[str]:
    if opts.label not in frame.columns:
        raise DataError(
            f"csv: label column '{opts.label}' not found in {path}; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    features = opts.features or [c for c in frame.columns if c != opts.label]
    absent = [c for c in features if c not in frame.columns]
    if absent:
        raise DataError(f"csv: feature column(s) {', '.join(absent)} not found in {path}")
    if opts.label in features:
        raise DataError(f"csv: the label column '{opts.label}' is also listed as a feature")
    if not features:
        raise DataError(f"csv: {path} has no feature columns besides '{opts.label}'")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        examples = ", ".join(_first_non_number(frame[c]) for c in non_numeric)
        raise DataError(
            f"csv: non-numeric feature column(s) in {path}: {examples}; encode them as "
            "numbers or leave them out with options.features"
        )
    return features


def _first_non_number(column: pd.Series) -> str:
    """'name (row R: 'value')' for the first non-number cell; R counts data rows from 1."""
    bad = column.notna() & pd.to_numeric(column, errors="coerce").isna()
    row = int(np.flatnonzero(bad.to_numpy())[0])
    return f"{column.name} (row {row + 1}: {column.iloc[row]!r})"


def _handle_missing(frame: pd.DataFrame, columns: list[str], opts: CsvOptions, path: Path):
    counts = frame[columns].isna().sum()
    counts = counts[counts > 0]
    if counts.empty:
        return frame, 0
    if opts.missing == "error":
        listing = ", ".join(f"{c} ({n} rows)" for c, n in counts.items())
        raise DataError(
            f"csv: missing values in {path}: {listing}; fill them or set options.missing: drop_rows"
        )
    kept = frame.dropna(subset=columns)
    if kept.empty:
        raise DataError(f"csv: every row of {path} has a missing value")
    return kept, len(frame) - len(kept)


def _check_label_coding(column: pd.Series, opts: CsvOptions, path: Path) -> None:
    """Class labels are all names or all whole numbers: "0/1" mixed with "no/yes", or 0.7,
    would silently become extra classes."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().any() and numbers.isna().any():
        named = sorted(map(str, column[numbers.isna()].unique()))[:3]
        coded = sorted(map(str, column[numbers.notna()].unique()))[:3]
        raise DataError(
            f"csv: label column '{opts.label}' in {path} mixes numbers ({', '.join(coded)}) "
            f"and names ({', '.join(named)}); use one coding"
        )
    fractional = numbers.notna() & (numbers != numbers.round())
    if fractional.any():
        example = column[fractional].iloc[0]
        raise DataError(
            f"csv: label column '{opts.label}' in {path} has non-integer class label(s) "
            f"(e.g. {example!r}); class labels must be whole numbers or names "
            "(or set options.task: regression)"
        )


def _labels(column: pd.Series, opts: CsvOptions, path: Path) -> tuple[np.ndarray, list[str], str]:
    if opts.task == "regression":
        if not pd.api.types.is_numeric_dtype(column):
            raise DataError(f"csv: regression label '{opts.label}' in {path} is not numeric")
        return column.to_numpy(np.float32), [opts.label], "regression"
    _check_label_coding(column, opts, path)
    classes = sorted(column.unique().tolist(), key=str)
    if len(classes) < 2:
        raise DataError(
            f"csv: label column '{opts.label}' in {path} has a single class "
            f"({classes[0]!r}); a classifier needs at least two"
        )
    task = opts.task if opts.task != "auto" else ("binary" if len(classes) == 2 else "multiclass")
    if task == "binary" and len(classes) != 2:
        raise DataError(
            f"csv: options.task is binary but '{opts.label}' in {path} has {len(classes)} classes"
        )
    codes = column.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    return codes, [str(c) for c in classes], task


def _finite_features(frame: pd.DataFrame, features: list[str], path: Path) -> np.ndarray:
    """The features as float32, refusing inf, -inf and values float32 cannot hold (1e300)."""
    x = frame[features].to_numpy(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        value = frame[features[col]].iloc[row]
        raise DataError(
            f"csv: feature column '{features[col]}' in {path} has a value that is not a finite "
            f"32-bit number (data row {row + 1}: {value!r}); "
            f"{int(bad.sum())} such cell(s) in all"
        )
    return x


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = CsvOptions(**options)
    path = Path(opts.path)
    frame = _read(path)
    features = _select_features(frame, opts, path)
    frame, dropped = _handle_missing(frame, [*features, opts.label], opts, path)
    y, class_names, task = _labels(frame[opts.label], opts, path)
    x = _finite_features(frame, features, path)
    return SourceData(
        task=task,
        kind="tabular",
        class_names=class_names,
        splits=pool(x, y),
        feature_names=[str(f) for f in features],
        notes={"rows_dropped_for_missing_values": dropped, "file": str(path)},
    )
