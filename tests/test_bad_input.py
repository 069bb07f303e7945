"""Bad input: one clear line naming the problem, exit status 2, nothing half-written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medflow.cli import main
from tests.conftest import write_clinical_csv, write_imagefolder, write_medmnist_npz


def prepare_cli(capsys, out: Path, **section) -> tuple[int, str]:
    code = main(["prepare", "--dataset", "d", "--spec", json.dumps(section), "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    return code, lines[0] if len(lines) == 1 else err


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def csv_section(path: Path, **options) -> dict:
    return {"source": "csv", "options": {"path": str(path), "label": "heart_attack", **options}}


def _edit_csv(path: Path, row: int, column: int, value: str) -> None:
    lines = path.read_text().splitlines()
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("mutate", "options", "expected"),
    [
        (lambda p: p.unlink(), {}, "csv: file not found: "),
        (lambda p: None, {"label": "mi"}, "label column 'mi' not found in"),
        (lambda p: _edit_csv(p, 2, 1, "obese"), {}, "non-numeric feature column(s) in"),
        (lambda p: _edit_csv(p, 5, 0, ""), {}, "missing values in"),
        (
            lambda p: p.write_text("bp,heart_attack\n1,0\n2,0\n3,0\n"),
            {},
            "has a single class (0)",
        ),
        (lambda p: p.write_text(""), {}, "is empty"),
    ],
    ids=["missing-file", "missing-label", "non-numeric", "missing-values", "single-class", "empty"],
)
def test_csv_bad_input(tmp_path, capsys, mutate, options, expected):
    path = write_clinical_csv(tmp_path / "mi.csv")
    mutate(path)
    out = tmp_path / "out"
    code, line = prepare_cli(capsys, out, **csv_section(path, **options))
    assert code == 2
    assert expected in line, line
    assert line.startswith("medflow: error:")
    assert_nothing_written(out)


def test_csv_named_errors_point_at_columns(tmp_path, capsys):
    path = write_clinical_csv(tmp_path / "mi.csv")
    _edit_csv(path, 2, 1, "obese")
    _, line = prepare_cli(capsys, tmp_path / "out", **csv_section(path))
    assert "bmi (row 2: 'obese')" in line
    path = write_clinical_csv(tmp_path / "mi.csv")
    _edit_csv(path, 5, 0, "")
    _, line = prepare_cli(capsys, tmp_path / "out", **csv_section(path))
    assert "blood_pressure (1 rows)" in line and "options.missing: drop_rows" in line


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a zip archive" * 40)


def _drop_key(path: Path) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "val_labels"}
    np.savez(path, **arrays)


def _mismatch(path: Path) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["test_labels"] = arrays["test_labels"][:-3]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.unlink(), "not found; put the file there or set options.download: true"),
        (_truncate, "is corrupt or truncated"),
        (_garbage, "is corrupt or truncated"),
        (_drop_key, "lacks key(s) val_labels"),
        (_mismatch, "[test]: 16 images but 13 labels"),
    ],
    ids=["missing", "truncated", "corrupt", "wrong-keys", "count-mismatch"],
)
def test_medmnist_bad_input(tmp_path, capsys, mutate, expected):
    npz = write_medmnist_npz(tmp_path / "mm" / "breastmnist.npz")
    mutate(npz)
    out = tmp_path / "out"
    section = {
        "source": "medmnist",
        "options": {"root": str(tmp_path / "mm"), "flag": "breastmnist"},
    }
    code, line = prepare_cli(capsys, out, **section)
    assert code == 2
    assert expected in line, line
    assert_nothing_written(out)


def test_medmnist_wrong_channel_count(tmp_path, capsys):
    write_medmnist_npz(tmp_path / "mm" / "dermamnist.npz", n_classes=7, channels=1)
    section = {
        "source": "medmnist",
        "options": {"root": str(tmp_path / "mm"), "flag": "dermamnist"},
    }
    code, line = prepare_cli(capsys, tmp_path / "out", **section)
    assert code == 2 and "has 1-channel images; dermamnist has 3" in line


def test_imagefolder_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    section = {"source": "imagefolder", "options": {"root": str(tmp_path / "empty")}}
    code, line = prepare_cli(capsys, tmp_path / "out", **section)
    assert code == 2 and "imagefolder:" in line and "class folder" in line.lower()
    (tmp_path / "empty" / "cats").mkdir()
    code, line = prepare_cli(capsys, tmp_path / "out", **section)
    assert code == 2 and "no valid file" in line.lower()
    assert_nothing_written(tmp_path / "out")


def test_imagefolder_unreadable_image_is_named(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "imgs", per_class=5)
    bad = root / "malignant" / "img_002.png"
    bad.write_bytes(b"\x89PNG broken")
    code, line = prepare_cli(
        capsys, tmp_path / "out", source="imagefolder", options={"root": str(root)}
    )
    assert code == 2 and f"cannot read image {bad}" in line
    assert_nothing_written(tmp_path / "out")


def test_schema_violation_in_spec(tmp_path, capsys):
    code, line = prepare_cli(capsys, tmp_path / "out", source="gates", option={"gate": "OR"})
    assert code == 2 and "unknown key 'option' (did you mean 'options'?)" in line


def test_impossible_split_and_subsample_requests(tmp_path, capsys):
    code, line = prepare_cli(
        capsys,
        tmp_path / "o1",
        source="sklearn_digits",
        split={"val_fraction": 0.5, "test_fraction": 0.5},
    )
    assert code == 2 and "leaves no training data" in line
    code, line = prepare_cli(capsys, tmp_path / "o2", source="sklearn_digits", train_per_class=500)
    assert code == 2 and "train_per_class=500 but class" in line


def test_failed_reprepare_keeps_the_earlier_dataset_intact(tmp_path, capsys):
    path = write_clinical_csv(tmp_path / "mi.csv")
    out = tmp_path / "out"
    code, _ = prepare_cli(capsys, out, **csv_section(path))
    assert code == 0
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    _edit_csv(path, 4, 1, "n/a?")
    code, _ = prepare_cli(capsys, out, **csv_section(path))
    assert code == 2
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert after == before
