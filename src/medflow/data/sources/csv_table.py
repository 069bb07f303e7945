"""A clinical table as it comes: one row per patient, a named label column, numeric and
categorical features, ID columns to leave out, a few missing values, any separator.

Reading and every check that needs only the file happen in ``load``; imputation and the
one-hot categories are fitted on the train split by the ``fit_transform`` that prepare
applies after splitting (medflow.data.table_encoding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medflow.config.section import Section
from medflow.data.base import SPLITS, Fitted, SourceData, Split, pool
from medflow.data.table_encoding import IMPUTE, TableEncoder
from medflow.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CsvOptions(Section):
    SCHEMA = "csv_options"

    path: str
    label: str
    features: list[str] | None
    drop: list[str]
    categorical: list[str]
    positive_class: str | int | None
    sep: str
    decimal: str
    task: str
    missing: str


def _duplicate_headers(path: Path, sep: str) -> list[str]:
    """Header names given more than once (pandas would rename the copies "name.1" silently)."""
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(name) for name in header.iloc[0].tolist()] if len(header) else []
    return sorted({name for name in names if names.count(name) > 1})


def _read(path: Path, opts: CsvOptions) -> pd.DataFrame:
    if opts.sep == opts.decimal:
        raise ConfigError(
            f"csv: options.sep and options.decimal are both {opts.sep!r}; a decimal-comma "
            "file needs another separator (sep: ';')"
        )
    if not path.is_file():
        raise DataError(f"csv: file not found: {path}")
    try:
        duplicated = _duplicate_headers(path, opts.sep)
        if duplicated:
            raise DataError(
                f"csv: {path} names column(s) {', '.join(map(repr, duplicated))} more than "
                "once in its header; rename or remove the copies"
            )
        return pd.read_csv(path, sep=opts.sep, decimal=opts.decimal)
    except pd.errors.EmptyDataError:
        raise DataError(f"csv: {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"csv: {path} is not a readable CSV: {exc}".replace("\n", " ")) from None


def _columns_listing(frame: pd.DataFrame) -> str:
    listing = ", ".join(map(str, frame.columns))
    if len(frame.columns) == 1 and any(mark in listing for mark in ";\t|"):
        listing += " (one column: set options.sep to the file's separator)"
    return listing


def _require_columns(frame: pd.DataFrame, names: list[str], option: str, path: Path) -> None:
    absent = [c for c in names if c not in frame.columns]
    if absent:
        raise DataError(
            f"csv: {option} names column(s) {', '.join(map(repr, absent))} not in {path}; "
            f"columns are: {_columns_listing(frame)}"
        )


def _select_features(frame: pd.DataFrame, opts: CsvOptions, path: Path) -> list[str]:
    """The feature columns (options.features in its order, else the file's minus the label
    and options.drop), every option's column names checked."""
    if opts.label not in frame.columns:
        raise DataError(
            f"csv: label column '{opts.label}' not found in {path}; "
            f"columns are: {_columns_listing(frame)}"
        )
    for option, names in (
        ("options.features", opts.features or []),
        ("options.drop", opts.drop),
        ("options.categorical", opts.categorical),
    ):
        _require_columns(frame, names, option, path)
        if opts.label in names:
            raise DataError(f"csv: {option} lists the label column '{opts.label}'")
    for option, names in (
        ("options.features", opts.features or []),
        ("options.categorical", opts.categorical),
    ):
        both = [c for c in names if c in opts.drop]
        if both:
            raise DataError(
                f"csv: column(s) {', '.join(map(repr, both))} are in both options.drop and {option}"
            )
    if opts.features is None:
        features = [c for c in frame.columns if c != opts.label and c not in opts.drop]
    else:
        features = list(opts.features)
        left_out = [c for c in opts.categorical if c not in features]
        if left_out:
            raise DataError(
                f"csv: options.categorical lists column(s) {', '.join(map(repr, left_out))} "
                "that options.features leaves out"
            )
    if not features:
        raise DataError(f"csv: {path} has no feature columns besides '{opts.label}'")
    _check_kinds(frame, features, opts, path)
    return [str(c) for c in features]


def _check_kinds(frame: pd.DataFrame, features: list[str], opts: CsvOptions, path: Path) -> None:
    """Numbers are used as numbers; text columns must be declared categorical."""
    numeric = [c for c in opts.categorical if pd.api.types.is_numeric_dtype(frame[c])]
    if numeric:
        raise DataError(
            f"csv: options.categorical lists column(s) {', '.join(map(repr, numeric))} that "
            f"hold numbers in {path}; numeric columns are used as numbers, so remove them "
            "from options.categorical (or write their codes as text)"
        )
    text = [
        c
        for c in features
        if c not in opts.categorical and not pd.api.types.is_numeric_dtype(frame[c])
    ]
    if text:
        examples = ", ".join(_first_non_number(frame[c]) for c in text)
        hint = (
            "; numbers with a decimal comma need options.decimal: ',' (and options.sep: ';')"
            if opts.decimal == "." and any(_decimal_comma(frame[c]) for c in text)
            else ""
        )
        raise DataError(
            f"csv: non-numeric feature column(s) in {path}: {examples}; list them in "
            "options.categorical, leave them out with options.drop, or encode them as "
            f"numbers{hint}"
        )


def _first_non_number(column: pd.Series) -> str:
    """'name (row R: 'value')' for the first non-number cell; R counts data rows from 1."""
    bad = column.notna() & pd.to_numeric(column, errors="coerce").isna()
    row = int(np.flatnonzero(bad.to_numpy())[0])
    return f"{column.name} (row {row + 1}: {column.iloc[row]!r})"


def _decimal_comma(column: pd.Series) -> bool:
    return bool(column.dropna().astype(str).str.fullmatch(r"-?\d+,\d+").any())


def _check_finite(frame: pd.DataFrame, numeric: list[str], path: Path) -> None:
    """Refuse inf, -inf and values float32 cannot hold (1e300); missing cells are handled
    by options.missing."""
    if not numeric:
        return
    x = frame[numeric].to_numpy(np.float32)
    bad = ~np.isfinite(x) & frame[numeric].notna().to_numpy()
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        value = frame[numeric[col]].iloc[row]
        raise DataError(
            f"csv: feature column '{numeric[col]}' in {path} has a value that is not a finite "
            f"32-bit number (data row {row + 1}: {value!r}); "
            f"{int(bad.sum())} such cell(s) in all"
        )


def _handle_missing(
    frame: pd.DataFrame, features: list[str], opts: CsvOptions, path: Path
) -> tuple[pd.DataFrame, dict[str, object]]:
    """error: stop; drop_rows: drop incomplete rows; impute_*: drop only rows without a
    label (the features are filled later, from train)."""
    columns = [*features, opts.label]
    counts = frame[columns].isna().sum()
    counts = counts[counts > 0]
    if opts.missing == "error" and not counts.empty:
        listing = ", ".join(f"{c} ({n} rows)" for c, n in counts.items())
        raise DataError(
            f"csv: missing values in {path}: {listing}; fill them or set options.missing: "
            "drop_rows, impute_median or impute_mean"
        )
    if opts.missing in IMPUTE:
        kept = frame.dropna(subset=[opts.label])
        notes = {"rows_dropped_for_missing_label": len(frame) - len(kept)}
        if notes["rows_dropped_for_missing_label"]:
            log.warning(
                "csv: %s: %d row(s) without a label '%s' left out",
                path,
                notes["rows_dropped_for_missing_label"],
                opts.label,
            )
    else:
        kept = frame.dropna(subset=columns)
        notes = {"rows_dropped_for_missing_values": len(frame) - len(kept)}
    if kept.empty:
        raise DataError(f"csv: every row of {path} has a missing value")
    return kept.reset_index(drop=True), notes


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


def _class_order(classes: list[Any], opts: CsvOptions, path: Path) -> list[Any]:
    """Binary: the negative class first. Default: sorted as text, the second is positive."""
    if opts.positive_class is None:
        return classes
    names = [str(c) for c in classes]
    positive = str(opts.positive_class)
    if positive not in names:
        raise DataError(
            f"csv: options.positive_class {positive!r} is not a value of label column "
            f"'{opts.label}' in {path}; its values are: {', '.join(names)}"
        )
    return [c for c in classes if str(c) != positive] + [classes[names.index(positive)]]


def _labels(column: pd.Series, opts: CsvOptions, path: Path) -> tuple[np.ndarray, list[str], str]:
    if opts.task == "regression":
        if opts.positive_class is not None:
            raise DataError("csv: options.positive_class is for a binary label, not regression")
        if not pd.api.types.is_numeric_dtype(column):
            raise DataError(f"csv: regression label '{opts.label}' in {path} is not numeric")
        return column.to_numpy(np.float32), [opts.label], "regression"
    _check_label_coding(column, opts, path)
    if pd.api.types.is_float_dtype(column):
        column = column.astype(np.int64)  # whole numbers (checked); 1.0 -> class "1"
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
    if opts.positive_class is not None and task != "binary":
        raise DataError(
            f"csv: options.positive_class is for a binary label, but '{opts.label}' in {path} "
            f"has {len(classes)} classes"
        )
    classes = _class_order(classes, opts, path)
    codes = column.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    return codes, [str(c) for c in classes], task


def _encode(
    splits: dict[str, Split],
    *,
    columns: list[str],
    dtypes: dict[str, Any],
    opts: CsvOptions,
) -> Fitted:
    """prepare's fit_transform: fit the encoder on train, encode every split with it."""
    frames = {s: pd.DataFrame(splits[s].x, columns=columns).astype(dtypes) for s in SPLITS}
    encoder = TableEncoder.fit(frames["train"], columns, opts.categorical, opts.missing)
    # One note per column, each a number, text or list: the report shows a note per row.
    notes: dict[str, object] = {}
    if opts.missing in IMPUTE:
        for column, value in encoder.fill.items():
            notes[f"imputed_value:{column}"] = value
        for column in columns:  # numbers filled with the value above, categories as zeros
            holes = {s: int(frames[s][column].isna().sum()) for s in SPLITS}
            if any(holes.values()):
                notes[f"missing_cells:{column}"] = ", ".join(f"{s} {n}" for s, n in holes.items())
    for column, categories in encoder.categories.items():
        notes[f"categories:{column}"] = categories
    encoded = {}
    for split in SPLITS:
        x, unseen = encoder.transform(frames[split])
        encoded[split] = Split(x, splits[split].y, splits[split].index)
        for column, categories in unseen.items():
            key = f"unseen_categories:{column}"
            notes[key] = [*notes.get(key, []), *(f"{c} ({split})" for c in categories)]
            log.warning(
                "csv: column '%s': categor%s %s in the %s split but not in train; encoded "
                "as all zeros",
                column,
                "y" if len(categories) == 1 else "ies",
                ", ".join(map(repr, categories)),
                split,
            )
    return Fitted(encoded, encoder.feature_names, notes)


def load(options: dict[str, Any], seed: int) -> SourceData:
    opts = CsvOptions.from_section(options)
    path = Path(opts.path)
    frame = _read(path, opts)
    features = _select_features(frame, opts, path)
    _check_finite(frame, [c for c in features if c not in opts.categorical], path)
    frame, missing_notes = _handle_missing(frame, features, opts, path)
    y, class_names, task = _labels(frame[opts.label], opts, path)
    raw = frame[features]
    notes: dict[str, object] = {
        "file": str(path),
        "sep": opts.sep,
        "decimal": opts.decimal,
        "missing": opts.missing,
        **missing_notes,
        "dropped_columns": list(opts.drop),
        "categorical_columns": list(opts.categorical),
    }
    if task == "binary":
        notes["positive_class"] = class_names[1]
    log.info(
        "csv: %s: %d rows, %d feature columns (%d categorical), dropped %s, missing: %s",
        path,
        len(frame),
        len(features),
        len(opts.categorical),
        ", ".join(opts.drop) or "none",
        opts.missing,
    )
    return SourceData(
        task=task,
        kind="tabular",
        class_names=class_names,
        splits=pool(raw.to_numpy(object), y),
        feature_names=features,
        notes=notes,
        fit_transform=partial(_encode, columns=features, dtypes=raw.dtypes.to_dict(), opts=opts),
    )
