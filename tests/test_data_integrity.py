"""Inputs that used to prepare silently into wrong data: pixel depth, labels, CSV headers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medflow.cli import main
from medflow.data.format import PreparedDataset
from medflow.data.pixels import to_uint8
from medflow.errors import DataError
from tests.conftest import write_clinical_csv, write_medmnist_npz


def prepare(capsys, out: Path, section: dict) -> tuple[int, str]:
    code = main(["prepare", "--dataset", "d", "--spec", json.dumps(section), "--out", str(out)])
    return code, capsys.readouterr().err.strip()


def npz_section(root: Path, flag: str = "breastmnist") -> dict:
    return {"source": "medmnist", "options": {"flag": flag, "root": str(root)}}


def rewrite_npz(path: Path, **replace: np.ndarray) -> None:
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    np.savez(path, **{**arrays, **replace})


def test_sixteen_bit_pngs_keep_their_contrast(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for label, level in (("low", 1000), ("high", 30000)):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(10):
            pixels = (level + rng.integers(-200, 200, size=(12, 12))).astype(np.uint16)
            Image.fromarray(pixels).save(tmp_path / "img" / label / f"{i}.png")
    section = {"source": "imagefolder", "options": {"root": str(tmp_path / "img"), "image_size": 8}}
    code, err = prepare(capsys, tmp_path / "out", section)
    assert code == 0, err
    ds = PreparedDataset.open(tmp_path / "out")
    split = ds.load("train")
    means = {int(c): split.x[split.y == c].astype(float).mean() for c in np.unique(split.y)}
    names = ds.meta["class_names"]
    # 16-bit range scaled to 8 bits: 1000 -> ~4, 30000 -> ~117 (it was 255 for both).
    assert means[names.index("low")] == pytest.approx(1000 * 255 / 65535, abs=2)
    assert means[names.index("high")] == pytest.approx(30000 * 255 / 65535, abs=2)


def test_npz_float_images_in_unit_range_are_scaled(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "breastmnist.npz", counts=(20, 6, 8))
    with np.load(path) as npz:
        floats = {f"{s}_images": npz[f"{s}_images"] / 255.0 for s in ("train", "val", "test")}
    rewrite_npz(path, **floats)
    code, err = prepare(capsys, tmp_path / "out", npz_section(tmp_path))
    assert code == 0, err
    train = PreparedDataset.open(tmp_path / "out").load("train")
    with np.load(path) as npz:
        np.testing.assert_array_equal(train.x[:, 0], np.round(npz["train_images"] * 255))


def test_npz_int16_beyond_eight_bits_is_refused_naming_dtype_and_key(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "breastmnist.npz", counts=(20, 6, 8))
    with np.load(path) as npz:
        wide = {f"{s}_images": npz[f"{s}_images"].astype(np.int16) * 10 for s in ("train",)}
    rewrite_npz(path, **wide)
    out = tmp_path / "out"
    code, err = prepare(capsys, out, npz_section(tmp_path))
    assert code == 2
    assert "int16" in err and "options.value_range" in err and str(path) in err
    assert not out.exists() or not any(out.iterdir())


def test_value_range_clips_and_scales_a_window():
    ct = np.array([[-1024, 0, 40, 80, 3000]], dtype=np.int16)
    assert to_uint8(ct, "ct", value_range=[0, 80]).tolist() == [[0, 0, 128, 255, 255]]
    with pytest.raises(DataError, match=r"options.value_range \[5.0, 5.0\]"):
        to_uint8(ct, "ct", value_range=[5.0, 5.0])


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (lambda n: (np.arange(n) % 2 + 0.7)[:, None], "not whole class ids (e.g. 0.7)"),
        (lambda n: np.stack([np.arange(n) % 2, np.zeros(n)], 1), "2 label columns, expected 1"),
    ],
    ids=["fractional", "two-columns"],
)
def test_npz_labels_must_be_one_column_of_class_ids(tmp_path, capsys, labels, expected):
    path = write_medmnist_npz(tmp_path / "breastmnist.npz", counts=(20, 6, 8))
    rewrite_npz(path, train_labels=labels(20))
    code, err = prepare(capsys, tmp_path / "out", npz_section(tmp_path))
    assert code == 2
    assert expected in err and "[train]" in err


def csv_with_header(tmp_path: Path, header: str) -> Path:
    path = write_clinical_csv(tmp_path / "mi.csv")
    lines = path.read_text().splitlines()
    rows = [f"{line},{line.split(',')[2]}" for line in lines[1:]]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    "header",
    ["blood_pressure,bmi,heart_attack,heart_attack", "bmi,bmi,heart_attack,x"],
    ids=["label-repeated", "feature-repeated"],
)
def test_csv_duplicate_header_is_an_error_naming_the_column(tmp_path, capsys, header):
    path = csv_with_header(tmp_path, header)
    section = {"source": "csv", "options": {"path": str(path), "label": "heart_attack"}}
    code, err = prepare(capsys, tmp_path / "out", section)
    duplicated = "heart_attack" if "attack,heart" in header else "bmi"
    assert code == 2
    assert f"names column(s) '{duplicated}' more than once" in err and str(path) in err


def test_csv_label_mixing_numbers_and_names_is_refused(tmp_path, capsys):
    path = write_clinical_csv(tmp_path / "mi.csv")
    lines = path.read_text().splitlines()
    recoded = [lines[0]] + [
        line if i % 2 else line.rsplit(",", 1)[0] + ("," + ("yes" if line.endswith("1") else "no"))
        for i, line in enumerate(lines[1:])
    ]
    path.write_text("\n".join(recoded) + "\n")
    section = {"source": "csv", "options": {"path": str(path), "label": "heart_attack"}}
    code, err = prepare(capsys, tmp_path / "out", section)
    assert code == 2
    assert "mixes numbers (0, 1) and names (no, yes)" in err


@pytest.fixture
def prepared_digits(tmp_path, capsys) -> Path:
    out = tmp_path / "digits"
    section = {"source": "sklearn_digits", "train_per_class": 5}
    code, err = prepare(capsys, out, section)
    assert code == 0, err
    return out


def test_swapped_split_file_is_detected_on_load(prepared_digits):
    (prepared_digits / "train.safetensors").write_bytes(
        (prepared_digits / "val.safetensors").read_bytes()
    )
    ds = PreparedDataset.open(prepared_digits)
    assert len(ds.load("val")) > 0  # the untouched splits still load
    with pytest.raises(DataError, match=r"train.safetensors is not the file prepare wrote"):
        ds.load("train")


def test_truncated_split_file_names_the_file_and_the_fix(prepared_digits):
    path = prepared_digits / "test.safetensors"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError) as err:
        PreparedDataset.open(prepared_digits).load("test")
    assert str(path) in str(err.value) and f"delete {prepared_digits}" in str(err.value)


@pytest.mark.parametrize("value", ["inf", "-inf", "1e300"])
def test_csv_non_finite_feature_is_refused_naming_column_and_row(tmp_path, capsys, value):
    path = write_clinical_csv(tmp_path / "mi.csv")
    lines = path.read_text().splitlines()
    lines[3] = f"{value},{lines[3].split(',', 1)[1]}"
    path.write_text("\n".join(lines) + "\n")
    section = {"source": "csv", "options": {"path": str(path), "label": "heart_attack"}}
    code, err = prepare(capsys, tmp_path / "out", section)
    assert code == 2
    assert "'blood_pressure'" in err and "data row 3" in err and "not a finite" in err


def test_a_split_with_a_single_class_is_refused_at_prepare(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "breastmnist.npz", counts=(20, 6, 8))
    rewrite_npz(path, test_labels=np.zeros((8, 1), dtype=np.uint8))
    out = tmp_path / "out"
    code, err = prepare(capsys, out, npz_section(tmp_path))
    assert code == 2
    assert "the test split holds only class" in err
    assert not out.exists() or not any(out.iterdir())


def test_value_range_from_the_config_windows_int16_images(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "breastmnist.npz", counts=(20, 6, 8))
    with np.load(path) as npz:
        wide = {f"{s}_images": npz[f"{s}_images"].astype(np.int16) * 10 for s in ("train",)}
    rewrite_npz(path, **wide)
    section = npz_section(tmp_path)
    section["options"]["value_range"] = [0, 2550]
    code, err = prepare(capsys, tmp_path / "out", section)
    assert code == 0, err
    train = PreparedDataset.open(tmp_path / "out").load("train")
    np.testing.assert_array_equal(train.x[:, 0], np.round(wide["train_images"] / 10))


def test_damaged_checkpoint_and_model_files_are_named_with_the_fix(tmp_path):
    from medflow.ml.loop import train
    from medflow.ml.transfer import load_model_file, save_model_file
    from tests.test_train import blobs_data, run_config

    data, cfg = blobs_data(), run_config(epochs=2)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.parent.mkdir()
    result = train(cfg, data, checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=r"checkpoint.pt is damaged .*delete it to train"):
        train(cfg, data, checkpoint=ckpt)

    model_file = tmp_path / "pretrain" / "relu" / "model.pt"
    model_file.parent.mkdir(parents=True)
    save_model_file(model_file, result.model, cfg.model, data.input_shape)
    assert load_model_file(model_file)[0] is not None  # a good file loads
    model_file.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError) as err:
        load_model_file(model_file)
    message = str(err.value)
    assert str(model_file) in message and f"delete {model_file.parent}" in message
    assert "weights_only" not in message and "\n" not in message
