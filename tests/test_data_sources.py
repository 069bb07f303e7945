"""Every source through the real prepare stage: format, determinism, disjoint splits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medflow.config.schema import validate_section
from medflow.config.types import DatasetConfig
from medflow.data.base import SPLITS
from medflow.data.format import PreparedDataset
from medflow.data.registry import SOURCES
from medflow.data.sources.synthetic import CLASS_NAMES, SyntheticOptions, generate
from medflow.stages.prepare import prepare_dataset
from tests.conftest import write_clinical_csv, write_imagefolder, write_medmnist_npz


def dataset(name: str, **section) -> DatasetConfig:
    return DatasetConfig.from_validated(name, validate_section(section, "dataset", source=name))


def prepare(tmp_path: Path, cfg: DatasetConfig) -> PreparedDataset:
    prepare_dataset(cfg, tmp_path / cfg.name)
    return PreparedDataset.open(tmp_path / cfg.name)


def file_digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def assert_disjoint_splits(ds: PreparedDataset) -> None:
    seen: set[int] = set()
    for split in SPLITS:
        index = set(ds.load(split).index.tolist())
        assert not index & seen, f"{split} overlaps an earlier split"
        seen |= index


def test_registry_and_schema_list_the_same_sources():
    from medflow.config.schema import load_schema

    assert set(SOURCES) == set(load_schema()["$defs"]["dataset"]["properties"]["source"]["enum"])


@pytest.mark.parametrize(
    ("gate", "labels"), [("OR", [0, 1, 1, 1]), ("AND", [0, 0, 0, 1]), ("XOR", [0, 1, 1, 0])]
)
def test_gates_are_the_lecture_truth_tables(tmp_path, gate, labels):
    ds = prepare(tmp_path, dataset("g", source="gates", options={"gate": gate}))
    for split in SPLITS:
        part = ds.load(split)
        np.testing.assert_array_equal(part.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
        np.testing.assert_array_equal(part.y, labels)
    assert ds.meta["task"] == "binary" and ds.meta["feature_names"] == ["x1", "x2"]


def test_breast_cancer_meta_and_train_only_normalisation(tmp_path):
    ds = prepare(tmp_path, dataset("bc", source="sklearn_breast_cancer"))
    meta = ds.meta
    assert meta["task"] == "binary" and meta["kind"] == "tabular"
    assert meta["input_shape"] == [30]
    assert sum(meta["split_sizes"].values()) == 569
    assert meta["class_names"] == ["benign", "malignant"]  # malignant is the positive class
    assert int(np.concatenate([ds.load(s).y for s in SPLITS]).sum()) == 212  # malignant
    assert len(meta["content_hash"]) == 16
    train = ds.load("train").x.astype(np.float64)
    everything = np.concatenate([ds.load(s).x for s in SPLITS]).astype(np.float64)
    np.testing.assert_allclose(meta["normalisation"]["mean"], train.mean(axis=0), rtol=1e-6)
    assert not np.allclose(meta["normalisation"]["mean"], everything.mean(axis=0), rtol=1e-6)
    normalised = ds.normalise(ds.load("train").x)
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-4)
    assert_disjoint_splits(ds)


def test_digits_stratified_split_and_per_class_subsample(tmp_path):
    ds = prepare(tmp_path, dataset("dg", source="sklearn_digits", train_per_class=7))
    assert ds.meta["input_shape"] == [1, 8, 8] and ds.meta["channels"] == 1
    assert ds.meta["class_counts"]["train"] == [7] * 10
    val_counts = np.array(ds.meta["class_counts"]["val"])
    assert val_counts.max() - val_counts.min() <= 2  # stratified
    assert_disjoint_splits(ds)
    assert sum(ds.meta["split_sizes"].values()) < 1797  # the train split was subsampled


def test_same_config_gives_byte_identical_files_and_other_seed_differs(tmp_path):
    cfg = dataset("dg", source="sklearn_digits", train_per_class=5)
    prepare_dataset(cfg, tmp_path / "a")
    prepare_dataset(cfg, tmp_path / "b")
    assert file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    prepare_dataset(
        dataset("dg", source="sklearn_digits", train_per_class=5, seed=1), tmp_path / "c"
    )
    assert (
        file_digests(tmp_path / "a")["train.safetensors"]
        != file_digests(tmp_path / "c")["train.safetensors"]
    )


def test_synthetic_is_large_balanced_seeded_and_varied():
    images, labels = generate(SyntheticOptions(n_images=1200, image_size=28), seed=3)
    assert images.shape == (1200, 1, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [100] * len(CLASS_NAMES)
    again, _ = generate(SyntheticOptions(n_images=1200, image_size=28), seed=3)
    np.testing.assert_array_equal(images, again)
    other, _ = generate(SyntheticOptions(n_images=1200, image_size=28), seed=4)
    assert not np.array_equal(images, other)
    # Classes differ on average (a linear probe on raw pixels would see signal).
    class_means = np.stack([images[labels == c].mean(axis=0) for c in range(len(CLASS_NAMES))])
    assert np.ptp(class_means.reshape(len(CLASS_NAMES), -1).mean(axis=1)) > 5
    assert images.std() > 20  # not blank


def test_synthetic_prepared_at_digit_size(tmp_path):
    cfg = dataset("syn", source="synthetic", options={"n_images": 600, "image_size": 8})
    ds = prepare(tmp_path, cfg)
    assert ds.meta["input_shape"] == [1, 8, 8] and ds.meta["n_classes"] == 12
    assert sum(ds.meta["split_sizes"].values()) == 600
    assert_disjoint_splits(ds)


def test_csv_clinical_table(tmp_path):
    path = write_clinical_csv(tmp_path / "mi.csv")
    cfg = dataset("mi", source="csv", options={"path": str(path), "label": "heart_attack"})
    ds = prepare(tmp_path, cfg)
    assert ds.meta["feature_names"] == ["blood_pressure", "bmi"]
    assert ds.meta["class_names"] == ["0", "1"] and ds.meta["task"] == "binary"
    assert sum(ds.meta["split_sizes"].values()) == 120
    assert_disjoint_splits(ds)


def test_csv_drop_rows_handling_is_recorded(tmp_path):
    path = write_clinical_csv(tmp_path / "mi.csv")
    lines = path.read_text().splitlines()
    lines[3] = ",".join(["", *lines[3].split(",")[1:]])
    path.write_text("\n".join(lines) + "\n")
    options = {"path": str(path), "label": "heart_attack", "missing": "drop_rows"}
    ds = prepare(tmp_path, dataset("mi", source="csv", options=options))
    assert ds.meta["notes"]["rows_dropped_for_missing_values"] == 1
    assert sum(ds.meta["split_sizes"].values()) == 119


def test_csv_regression_and_multiclass(tmp_path):
    path = tmp_path / "t.csv"
    rows = [f"{i},{i % 3},{i * 0.5}" for i in range(60)]
    path.write_text("a,grade,score\n" + "\n".join(rows) + "\n")
    multi = prepare(
        tmp_path, dataset("m", source="csv", options={"path": str(path), "label": "grade"})
    )
    assert multi.meta["task"] == "multiclass" and multi.meta["n_classes"] == 3
    reg_opts = {"path": str(path), "label": "score", "task": "regression"}
    reg = prepare(tmp_path, dataset("r", source="csv", options=reg_opts))
    assert reg.meta["task"] == "regression" and reg.load("train").y.dtype == np.float32


def test_imagefolder_single_root_is_split_and_resized(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", per_class=15, size=20)
    cfg = dataset("ifo", source="imagefolder", options={"root": str(root), "image_size": 16})
    ds = prepare(tmp_path, cfg)
    assert ds.meta["input_shape"] == [1, 16, 16]
    assert ds.meta["class_names"] == ["benign", "malignant"]
    assert sum(ds.meta["split_sizes"].values()) == 30
    assert_disjoint_splits(ds)


def test_imagefolder_keeps_own_splits_in_rgb(tmp_path):
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        write_imagefolder(tmp_path / "imgs" / split, classes=("a", "b", "c"), per_class=n)
    options = {"root": str(tmp_path / "imgs"), "image_size": 8, "channels": 3}
    ds = prepare(tmp_path, dataset("ifs", source="imagefolder", options=options))
    assert ds.meta["splits_from_source"] is True
    assert ds.meta["split_sizes"] == {"train": 18, "val": 9, "test": 12}
    assert ds.meta["input_shape"] == [3, 8, 8] and ds.meta["task"] == "multiclass"


@pytest.mark.parametrize(
    ("flag", "channels", "n_classes", "multilabel", "task"),
    [
        ("breastmnist", 1, 2, False, "binary"),
        ("dermamnist", 3, 7, False, "multiclass"),
        ("chestmnist", 1, 14, True, "multilabel"),
    ],
)
def test_medmnist_npz_keeps_official_splits(tmp_path, flag, channels, n_classes, multilabel, task):
    write_medmnist_npz(
        tmp_path / "mm" / f"{flag}_64.npz",
        n_classes=n_classes,
        channels=channels,
        size=64,
        multilabel=multilabel,
    )
    options = {"root": str(tmp_path / "mm"), "flag": flag, "size": 64}
    ds = prepare(tmp_path, dataset(flag, source="medmnist", options=options))
    meta = ds.meta
    assert meta["task"] == task and meta["splits_from_source"] is True
    assert meta["split_sizes"] == {"train": 40, "val": 12, "test": 16}
    assert meta["input_shape"] == [channels, 64, 64]
    assert meta["n_classes"] == n_classes
    y = ds.load("train").y
    assert y.shape == ((40, n_classes) if multilabel else (40,))
    assert len(meta["normalisation"]["mean"]) == channels


def test_medmnist_download_is_opt_in_and_md5_verified(tmp_path, monkeypatch):
    """A local file:// mirror exercises the real download and checksum code, offline."""
    from medflow.data.medmnist_info import medmnist_info

    INFO = medmnist_info()

    mirror = write_medmnist_npz(tmp_path / "mirror" / "breastmnist.npz")
    options = {"root": str(tmp_path / "mm"), "flag": "breastmnist", "url": mirror.as_uri()}
    real_md5 = hashlib.md5(mirror.read_bytes()).hexdigest()
    monkeypatch.setitem(INFO, "breastmnist", {**INFO["breastmnist"], "MD5": real_md5})
    ds = prepare(tmp_path, dataset("bm", source="medmnist", options={**options, "download": True}))
    assert ds.meta["split_sizes"]["train"] == 40
    assert (tmp_path / "mm" / "breastmnist.npz").exists()

    monkeypatch.setitem(INFO, "breastmnist", {**INFO["breastmnist"], "MD5": "0" * 32})
    options["root"] = str(tmp_path / "mm2")
    from medflow.errors import DataError

    with pytest.raises(DataError, match=r"download of .* failed"):
        prepare(tmp_path, dataset("bm2", source="medmnist", options={**options, "download": True}))
    assert not (tmp_path / "mm2" / "breastmnist.npz").exists()


def test_medmnist_file_is_checked_against_the_info_table(tmp_path, monkeypatch, caplog):
    """Split sizes, then the MD5, against the medmnist INFO table: the verdict lands in the
    prepared notes (and so in the dataset card and the baselines caption) and in the log."""
    from medflow.data.medmnist_info import medmnist_info

    info = medmnist_info()
    path = write_medmnist_npz(tmp_path / "mm" / "breastmnist.npz")  # 40/12/16 images
    options = {"root": str(tmp_path / "mm"), "flag": "breastmnist"}

    notes = prepare(tmp_path, dataset("subset", source="medmnist", options=options)).meta["notes"]
    assert notes["official_release"] is False
    assert "split sizes 40/12/16" in notes["release"] and "546/78/156" in notes["release"]
    assert any("not the official release" in r.getMessage() for r in caplog.records)

    same_sizes = {"train": 40, "val": 12, "test": 16}
    monkeypatch.setitem(info, "breastmnist", {**info["breastmnist"], "n_samples": same_sizes})
    notes = prepare(tmp_path, dataset("resaved", source="medmnist", options=options)).meta["notes"]
    assert notes["official_release"] is False and "MD5 differs" in notes["release"]

    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    official = {**info["breastmnist"], "n_samples": same_sizes, "MD5": md5}
    monkeypatch.setitem(info, "breastmnist", official)
    notes = prepare(tmp_path, dataset("release", source="medmnist", options=options)).meta["notes"]
    verdict = (notes["official_release"], notes["release"])
    assert verdict == (True, "the official release (MD5 matches)")


def test_meta_json_is_sorted_stable_json(tmp_path):
    ds = prepare(tmp_path, dataset("g", source="gates"))
    meta = json.loads((ds.root / "meta.json").read_text())
    for key in (
        "task",
        "kind",
        "input_shape",
        "class_names",
        "split_sizes",
        "normalisation",
        "content_hash",
        "config",
        "class_counts",
    ):
        assert key in meta
    assert meta["config"]["source"] == "gates"
