"""Clinical tables as they come (the csv source's options), through the real prepare stage on
files pandas writes: positive class, dropped ID columns, one-hot categories fitted on train,
train-only imputation, separators and decimal commas; each bad value is one line naming the
option and the column. The shipped template runs through snakemake in
tests/test_readme_own_study.py, as the README's commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medflow.cli import main
from medflow.config.schema import validate_section
from medflow.config.types import DatasetConfig
from medflow.data.base import SPLITS
from medflow.data.format import PreparedDataset
from medflow.stages.prepare import prepare_dataset
from tests.conftest import REPO

TEMPLATE = REPO / "config" / "examples" / "clinical_csv.yaml"


def clinical_frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Patients as a hospital export has them: an ID, numbers, text categories, yes/no."""
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n).round(1)
    sex = rng.choice(["female", "male"], n)
    bmi = rng.normal(27, 5, n).round(2)
    smoker = rng.choice(["never", "former", "current"], n)
    bp = rng.normal(130, 15, n).round(0)
    risk = (
        0.08 * (age - 60) + 0.2 * (bmi - 27) + 1.2 * (smoker == "current") + 0.5 * (sex == "male")
    )
    outcome = np.where(risk + rng.normal(0, 1, n) > 0.5, "yes", "no")
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:04d}" for i in range(n)],
            "age": age,
            "sex": sex,
            "bmi": bmi,
            "smoker": smoker,
            "systolic_bp": bp,
            "outcome": outcome,
        }
    )


def write(frame: pd.DataFrame, path: Path, **to_csv) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, **to_csv)
    return path


def dataset(path: Path, **options) -> DatasetConfig:
    section = {
        "source": "csv",
        "options": {"path": str(path), "label": "outcome", **options},
        "split": {"val_fraction": 0.2, "test_fraction": 0.2},
    }
    return DatasetConfig.from_validated(
        "clinical", validate_section(section, "dataset", source="t")
    )


def prepare(tmp_path: Path, path: Path, **options) -> PreparedDataset:
    out = tmp_path / "prepared"
    prepare_dataset(dataset(path, **options), out)
    return PreparedDataset.open(out)


def prepare_error(tmp_path: Path, capsys, path: Path, **options) -> str:
    """The one error line the CLI prints for a refused dataset (and its exit status 2)."""
    section = {"source": "csv", "options": {"path": str(path), "label": "outcome", **options}}
    out = tmp_path / "refused"
    code = main(["prepare", "--dataset", "d", "--spec", json.dumps(section), "--out", str(out)])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert code == 2 and len(lines) == 1, lines
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


def rows(ds: PreparedDataset, split: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The file's rows that landed in ``split`` (index: position in the source)."""
    return frame.iloc[ds.load(split).index]


# --- positive_class --------------------------------------------------------------------------


def test_default_positive_class_is_the_second_sorted_as_text(tmp_path):
    frame = clinical_frame()
    ds = prepare(
        tmp_path,
        write(frame, tmp_path / "t.csv"),
        drop=["patient_id"],
        categorical=["sex", "smoker"],
    )
    assert ds.meta["class_names"] == ["no", "yes"]
    assert ds.meta["notes"]["positive_class"] == "yes"
    for split in SPLITS:
        expected = (rows(ds, split, frame)["outcome"] == "yes").to_numpy()
        np.testing.assert_array_equal(ds.load(split).y, expected.astype(np.int64))


@pytest.mark.parametrize("positive", ["no", "yes"])
def test_positive_class_gets_code_1(tmp_path, positive):
    frame = clinical_frame()
    path = write(frame, tmp_path / "t.csv")
    ds = prepare(
        tmp_path, path, positive_class=positive, drop=["patient_id"], categorical=["sex", "smoker"]
    )
    assert ds.meta["class_names"][1] == positive and ds.meta["notes"]["positive_class"] == positive
    for split in SPLITS:
        expected = (rows(ds, split, frame)["outcome"] == positive).to_numpy()
        np.testing.assert_array_equal(ds.load(split).y, expected.astype(np.int64))


def test_positive_class_of_a_numeric_label_may_be_given_as_a_number(tmp_path):
    frame = clinical_frame()[["age", "bmi", "outcome"]]
    frame["outcome"] = (frame["outcome"] == "yes").astype(int)
    ds = prepare(tmp_path, write(frame, tmp_path / "t.csv"), positive_class=0)
    assert ds.meta["class_names"] == ["1", "0"]
    train = ds.load("train")
    np.testing.assert_array_equal(train.y, 1 - frame["outcome"].to_numpy()[train.index])


def test_positive_class_that_is_not_a_label_value_is_one_line(tmp_path, capsys):
    path = write(clinical_frame(), tmp_path / "t.csv")
    line = prepare_error(
        tmp_path,
        capsys,
        path,
        positive_class="Yes",
        drop=["patient_id"],
        categorical=["sex", "smoker"],
    )
    assert "options.positive_class 'Yes' is not a value of label column 'outcome'" in line
    assert "its values are: no, yes" in line


def test_positive_class_of_a_multiclass_label_is_refused(tmp_path, capsys):
    frame = clinical_frame()[["age", "smoker"]].rename(columns={"smoker": "outcome"})
    line = prepare_error(tmp_path, capsys, write(frame, tmp_path / "t.csv"), positive_class="never")
    assert "options.positive_class is for a binary label" in line and "3 classes" in line


# --- drop ------------------------------------------------------------------------------------


def test_dropped_columns_are_left_out_and_recorded(tmp_path):
    frame = clinical_frame()[["patient_id", "age", "bmi", "systolic_bp", "outcome"]]
    ds = prepare(tmp_path, write(frame, tmp_path / "t.csv"), drop=["patient_id", "systolic_bp"])
    assert ds.meta["feature_names"] == ["age", "bmi"]
    assert ds.meta["input_shape"] == [2]
    assert ds.meta["notes"]["dropped_columns"] == ["patient_id", "systolic_bp"]
    train = ds.load("train")
    np.testing.assert_allclose(train.x, frame[["age", "bmi"]].to_numpy(np.float32)[train.index])


def test_an_id_column_not_dropped_is_named_with_the_options_that_fix_it(tmp_path, capsys):
    frame = clinical_frame()[["patient_id", "age", "outcome"]]
    line = prepare_error(tmp_path, capsys, write(frame, tmp_path / "t.csv"))
    assert "patient_id (row 1: 'P0000')" in line
    assert "options.categorical" in line and "options.drop" in line


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"drop": ["patient_ID"]}, "options.drop names column(s) 'patient_ID' not in"),
        ({"drop": ["outcome"]}, "options.drop lists the label column 'outcome'"),
        (
            {"drop": ["patient_id", "sex"], "categorical": ["sex", "smoker"]},
            "column(s) 'sex' are in both options.drop and options.categorical",
        ),
        (
            {"drop": ["patient_id", "bmi"], "features": ["age", "bmi"]},
            "column(s) 'bmi' are in both options.drop and options.features",
        ),
        (
            {"drop": ["patient_id"], "categorical": ["sex", "Smoker"]},
            "options.categorical names column(s) 'Smoker' not in",
        ),
        (
            {"drop": ["patient_id"], "categorical": ["sex", "smoker", "age"]},
            "options.categorical lists column(s) 'age' that hold numbers in",
        ),
        (
            {"features": ["age"], "categorical": ["sex"]},
            "options.categorical lists column(s) 'sex' that options.features leaves out",
        ),
        ({"features": ["age", "weight"]}, "options.features names column(s) 'weight' not in"),
    ],
    ids=[
        "unknown-drop",
        "drop-label",
        "drop-and-categorical",
        "drop-and-features",
        "unknown-categorical",
        "numeric-categorical",
        "categorical-not-a-feature",
        "unknown-feature",
    ],
)
def test_bad_column_options_are_one_line_naming_option_and_column(
    tmp_path, capsys, options, expected
):
    path = write(clinical_frame(), tmp_path / "t.csv")
    line = prepare_error(tmp_path, capsys, path, **options)
    assert expected in line, line
    assert line.startswith("medflow: error:")


# --- categorical -----------------------------------------------------------------------------


def test_categorical_columns_are_one_hot_with_named_features(tmp_path):
    frame = clinical_frame()
    ds = prepare(
        tmp_path,
        write(frame, tmp_path / "t.csv"),
        drop=["patient_id"],
        categorical=["sex", "smoker"],
    )
    names = ds.meta["feature_names"]
    assert names == [
        "age",
        "sex=female",
        "sex=male",
        "bmi",
        "smoker=current",
        "smoker=former",
        "smoker=never",
        "systolic_bp",
    ]
    assert ds.meta["notes"]["categories:sex"] == ["female", "male"]
    assert ds.meta["notes"]["categories:smoker"] == ["current", "former", "never"]
    assert not [k for k in ds.meta["notes"] if k.startswith("unseen_categories")]
    for split in SPLITS:
        x, source = ds.load(split).x, rows(ds, split, frame)
        assert x.dtype == np.float32
        for j, name in enumerate(names):
            column, _, category = name.partition("=")
            expected = source[column] == category if category else source[column]
            np.testing.assert_allclose(x[:, j], expected.to_numpy(np.float32))


def test_categories_come_from_train_and_an_unseen_one_encodes_as_zeros(tmp_path, caplog):
    frame = clinical_frame()
    options = {"drop": ["patient_id"], "categorical": ["sex", "smoker"]}
    first = prepare(tmp_path, write(frame, tmp_path / "t.csv"), **options)
    # The split depends on labels and row count only: put new categories on a test row.
    row = int(first.load("test").index[0])
    frame.loc[row, "smoker"] = "unknown"
    frame.loc[int(first.load("val").index[0]), "sex"] = "other"
    with caplog.at_level(logging.WARNING, logger="medflow.data.sources.csv_table"):
        ds = prepare(tmp_path, write(frame, tmp_path / "t.csv"), **options)
    assert ds.meta["notes"]["categories:smoker"] == ["current", "former", "never"]
    assert ds.meta["notes"]["categories:sex"] == ["female", "male"]
    assert ds.meta["notes"]["unseen_categories:smoker"] == ["unknown (test)"]
    assert ds.meta["notes"]["unseen_categories:sex"] == ["other (val)"]
    test = ds.load("test")
    smoker = [j for j, n in enumerate(ds.meta["feature_names"]) if n.startswith("smoker=")]
    position = int(np.flatnonzero(test.index == row)[0])
    assert test.x[position, smoker].tolist() == [0.0, 0.0, 0.0]
    assert (test.x[np.arange(len(test)) != position][:, smoker].sum(axis=1) == 1).all()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'smoker'" in w and "'unknown'" in w and "test split" in w for w in warnings)
    assert any("'sex'" in w and "'other'" in w and "val split" in w for w in warnings)


# --- missing values --------------------------------------------------------------------------


def with_holes(frame: pd.DataFrame, column: str, every: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index % every == 0, column] = np.nan
    return frame


@pytest.mark.parametrize(
    ("missing", "statistic"), [("impute_median", "median"), ("impute_mean", "mean")]
)
def test_imputation_uses_train_statistics_only(tmp_path, missing, statistic):
    frame = with_holes(clinical_frame()[["age", "bmi", "outcome"]], "bmi", 7)
    path = write(frame, tmp_path / "t.csv")
    ds = prepare(tmp_path, path, missing=missing)
    train_rows = rows(ds, "train", frame)
    fill = float(getattr(train_rows["bmi"], statistic)())
    assert ds.meta["notes"]["missing"] == missing
    assert ds.meta["notes"]["imputed_value:bmi"] == pytest.approx(fill)
    holes = {s: int(rows(ds, s, frame)["bmi"].isna().sum()) for s in SPLITS}
    assert all(holes.values())
    assert ds.meta["notes"]["missing_cells:bmi"] == ", ".join(f"{s} {n}" for s, n in holes.items())
    assert "missing_cells:age" not in ds.meta["notes"]  # nothing to fill
    for split in SPLITS:
        x, source = ds.load(split).x, rows(ds, split, frame)
        expected = source["bmi"].fillna(fill).to_numpy(np.float32)
        np.testing.assert_allclose(x[:, 1], expected)
    # val and test values never move the fill value: make them extreme and prepare again.
    held_out = np.concatenate([ds.load("val").index, ds.load("test").index])
    frame.loc[frame.index.isin(held_out) & frame["bmi"].notna(), "bmi"] = 1000.0
    again = prepare(tmp_path, write(frame, tmp_path / "t.csv"), missing=missing)
    assert again.meta["notes"]["imputed_value:bmi"] == pytest.approx(fill)


def test_missing_category_under_imputation_encodes_as_zeros_and_unlabelled_rows_go(tmp_path):
    frame = with_holes(clinical_frame(), "sex", 9)
    frame.loc[[3, 4], "outcome"] = np.nan
    path = write(frame, tmp_path / "t.csv")
    ds = prepare(
        tmp_path, path, missing="impute_median", drop=["patient_id"], categorical=["sex", "smoker"]
    )
    assert ds.meta["notes"]["rows_dropped_for_missing_label"] == 2
    assert sum(ds.meta["split_sizes"].values()) == len(frame) - 2
    assert (
        cells(ds.meta["notes"]["missing_cells:sex"])
        == frame["outcome"].notna().mul(frame["sex"].isna()).sum()
    )
    kept = frame.dropna(subset=["outcome"]).reset_index(drop=True)
    sex = [j for j, n in enumerate(ds.meta["feature_names"]) if n.startswith("sex=")]
    for split in SPLITS:
        part = ds.load(split)
        blank = kept.iloc[part.index]["sex"].isna().to_numpy()
        assert (part.x[blank][:, sex] == 0).all() and (
            part.x[~blank][:, sex].sum(axis=1) == 1
        ).all()


def test_missing_values_error_names_every_way_out(tmp_path, capsys):
    frame = with_holes(clinical_frame()[["age", "bmi", "outcome"]], "age", 10)
    line = prepare_error(tmp_path, capsys, write(frame, tmp_path / "t.csv"))
    assert "age (16 rows)" in line and "impute_median" in line and "drop_rows" in line


def test_a_column_empty_in_train_cannot_be_imputed(tmp_path, capsys):
    frame = clinical_frame()[["age", "bmi", "outcome"]]
    frame["bmi"] = np.nan
    line = prepare_error(tmp_path, capsys, write(frame, tmp_path / "t.csv"), missing="impute_mean")
    assert "options.missing: impute_mean cannot fill column(s) 'bmi'" in line


# --- separator and decimal mark --------------------------------------------------------------


def test_semicolon_and_decimal_comma_files_read_as_numbers(tmp_path):
    frame = clinical_frame()
    path = write(frame, tmp_path / "t.csv", sep=";", decimal=",")
    assert "27," in path.read_text() or ";" in path.read_text()
    ds = prepare(
        tmp_path, path, sep=";", decimal=",", drop=["patient_id"], categorical=["sex", "smoker"]
    )
    assert ds.meta["notes"]["sep"] == ";" and ds.meta["notes"]["decimal"] == ","
    train = ds.load("train")
    bmi = ds.meta["feature_names"].index("bmi")
    np.testing.assert_allclose(train.x[:, bmi], frame["bmi"].to_numpy(np.float32)[train.index])


def test_tab_separated_file(tmp_path):
    frame = clinical_frame()[["age", "bmi", "outcome"]]
    ds = prepare(tmp_path, write(frame, tmp_path / "t.tsv", sep="\t"), sep="\t")
    assert ds.meta["feature_names"] == ["age", "bmi"]


def test_a_semicolon_file_read_with_commas_says_to_set_sep(tmp_path, capsys):
    path = write(clinical_frame(), tmp_path / "t.csv", sep=";")
    line = prepare_error(tmp_path, capsys, path)
    assert "label column 'outcome' not found" in line and "set options.sep" in line


def test_a_decimal_comma_file_read_with_points_says_to_set_decimal(tmp_path, capsys):
    frame = clinical_frame()[["age", "bmi", "outcome"]]
    path = write(frame, tmp_path / "t.csv", sep=";", decimal=",")
    line = prepare_error(tmp_path, capsys, path, sep=";")
    assert "non-numeric feature column(s)" in line and "options.decimal: ','" in line


def test_the_same_separator_and_decimal_mark_is_refused(tmp_path, capsys):
    path = write(clinical_frame(), tmp_path / "t.csv")
    line = prepare_error(tmp_path, capsys, path, decimal=",")
    assert "options.sep and options.decimal are both ','" in line


# --- the file the shipped template names (run in tests/test_readme_own_study.py) -------------


def cells(note: str) -> int:
    return sum(int(part.split()[1]) for part in note.split(", "))


def template_csv(path: Path) -> Path:
    """The file the template names: ';' separated, decimal commas, an ID, text categories,
    a few empty cells."""
    frame = clinical_frame(n=200, seed=1)
    frame.loc[[5, 40, 77], "age"] = np.nan
    frame.loc[[12, 150], "smoker"] = np.nan
    frame.loc[[60], "systolic_bp"] = np.nan
    return write(frame, path, sep=";", decimal=",")
