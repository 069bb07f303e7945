"""Volumes: the 3-D MedMNIST reader and its bad inputs, the synthetic volumes, the 3-D models
with their backbone/head split and activations, 3-D augmentation, the memory-lean loading,
the config checks and the report/analysis figures; real files and real training, no mocks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medflow.cli import main
from medflow.config.compat import arch_kinds
from medflow.data.format import PreparedDataset
from medflow.data.medmnist_info import medmnist_info
from medflow.data.sources.synthetic_volumes import CLASS_NAMES, VolumeOptions, generate
from medflow.errors import MedflowError
from medflow.ml.batches import augment
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
from medflow.ml.models import (
    ACTIVATIONS,
    ModelConfig,
    build_model,
    freeze_backbone,
    replace_head,
)
from medflow.ml.optim import OptimConfig
from medflow.ml.volume_augment import augment_volume
from tests.conftest import write_medmnist_npz
from tests.medmnist_files import write_medmnist_flag
from tests.test_bad_input import _drop_key, _garbage, _mismatch, _truncate, prepare_cli

VOLUME_FLAGS = (
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
)


def medmnist_section(root: Path, flag: str, size: int = 28) -> dict:
    return {"source": "medmnist", "options": {"root": str(root), "flag": flag, "size": size}}


def prepare(tmp_path: Path, section: dict, name: str = "d") -> PreparedDataset:
    out = tmp_path / "prepared" / name
    spec = json.dumps(section)
    assert main(["prepare", "--dataset", name, "--spec", spec, "--out", str(out)]) == 0
    return PreparedDataset.open(out)


def small_volume_npz(path: Path, counts=(24, 8, 10), size: int = 28, n_classes: int = 2) -> Path:
    """A small 3-D .npz in the MedMNIST layout: uint8 (N, D, H, W) volumes, (N, 1) labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        labels = (np.arange(n) % n_classes).astype(np.uint8)[:, None]
        volumes = rng.integers(0, 120, size=(n, size, size, size), dtype=np.uint8)
        volumes[labels[:, 0] == 1, 8:20, 8:20, 8:20] += 120  # a bright cube marks class 1
        arrays[f"{split}_images"] = volumes
        arrays[f"{split}_labels"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# --- data -------------------------------------------------------------------------------


def test_medmnist_3d_flag_prepares_volumes_with_the_real_split_sizes(tmp_path):
    write_medmnist_flag(tmp_path / "mm", "nodulemnist3d")
    ds = prepare(tmp_path, medmnist_section(tmp_path / "mm", "nodulemnist3d"))
    meta = ds.meta
    assert meta["kind"] == "volume" and meta["task"] == "binary"
    assert meta["input_shape"] == [1, 28, 28, 28] and meta["channels"] == 1
    assert meta["split_sizes"] == {"train": 1158, "val": 165, "test": 310}
    assert meta["class_names"] == ["benign", "malignant"]
    train = ds.load("train")
    assert train.x.dtype == np.uint8 and train.x.shape == (1158, 1, 28, 28, 28)
    with np.load(tmp_path / "mm" / "nodulemnist3d.npz") as npz:  # the voxels, unchanged
        np.testing.assert_array_equal(train.x[:, 0], npz["train_images"])
        np.testing.assert_array_equal(train.y, npz["train_labels"][:, 0])


def test_every_3d_flag_is_declared_a_volume_at_28_and_64():
    from medflow.data.geometry import declared_input

    for flag in VOLUME_FLAGS:
        assert medmnist_info()[flag]["n_channels"] == 1
        for size in (28, 64):
            declared = declared_input("medmnist", {"flag": flag, "size": size})
            assert (declared.kind, declared.shape) == ("volume", (1, size, size, size))


def test_medmnist_3d_reads_the_64_file_name_and_multiclass_flags(tmp_path):
    root = tmp_path / "mm"
    small_volume_npz(root / "organmnist3d_64.npz", size=64, n_classes=11, counts=(22, 11, 11))
    ds = prepare(tmp_path, medmnist_section(root, "organmnist3d", 64))
    assert ds.meta["input_shape"] == [1, 64, 64, 64] and ds.meta["task"] == "multiclass"
    assert len(ds.meta["class_names"]) == 11 and ds.meta["notes"]["size"] == 64


def _two_d_file(path: Path) -> None:
    write_medmnist_npz(path)  # a 2-D grayscale file (N, 28, 28) under a 3-D flag's name


def _wrong_size(path: Path) -> None:
    small_volume_npz(path, size=20)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.unlink(), "not found; put the file there or set options.download: true"),
        (_truncate, "is corrupt or truncated"),
        (_garbage, "is corrupt or truncated"),
        (_drop_key, "lacks key(s) val_labels"),
        (_mismatch, "[test]: 10 images but 7 labels"),
        (_two_d_file, "2-D images; this is a 3-D flag"),
        (_wrong_size, "volumes of 20x20x20, but options.size is 28"),
    ],
    ids=["missing", "truncated", "corrupt", "wrong-keys", "count-mismatch", "2d-file", "size"],
)
def test_medmnist_3d_bad_input_is_one_line_naming_the_file(tmp_path, capsys, mutate, expected):
    path = small_volume_npz(tmp_path / "mm" / "nodulemnist3d.npz")
    mutate(path)
    out = tmp_path / "out"
    code, line = prepare_cli(capsys, out, **medmnist_section(tmp_path / "mm", "nodulemnist3d"))
    assert code == 2
    assert expected in line, line
    assert str(path) in line and "\n" not in line.strip()
    assert not out.exists() or not any(out.iterdir())


def test_a_3d_file_under_a_2d_flag_is_refused(tmp_path, capsys):
    small_volume_npz(tmp_path / "mm" / "breastmnist.npz")
    code, line = prepare_cli(
        capsys, tmp_path / "out", **medmnist_section(tmp_path / "mm", "breastmnist")
    )
    assert code == 2
    assert "3-D volumes; this is a 2-D flag" in line and "breastmnist.npz" in line, line


def test_3d_flags_exist_at_28_and_64_only(tmp_path, capsys):
    section = medmnist_section(tmp_path, "nodulemnist3d", 128)
    code, err = prepare_cli(capsys, tmp_path / "out", **section)
    assert code == 2 and "size" in err and "128" in err, err


def test_synthetic_volumes_are_seeded_balanced_and_fast():
    opts = VolumeOptions(n_volumes=2000, size=28, noise=0.08, classes=None)
    started = time.perf_counter()
    x, y = generate(opts, seed=3)
    elapsed = time.perf_counter() - started
    assert x.shape == (2000, 1, 28, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [250] * len(CLASS_NAMES)
    x2, y2 = generate(opts, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(generate(opts, seed=4)[0][:5], x[:5])
    # 10,000 volumes in under 60 s here: 2,000 in well under 12 s (even on a busy machine).
    assert elapsed < 12, elapsed
    # The classes differ in shape: mean bright-voxel fraction per class is not all alike.
    bright = [(x[y == k] > 140).mean() for k in range(len(CLASS_NAMES))]
    assert max(bright) > 2 * min(bright)


def test_synthetic_volumes_source_prepares_a_subset_of_classes(tmp_path):
    section = {
        "source": "synthetic_volumes",
        "options": {"n_volumes": 200, "size": 16, "classes": ["sphere", "shell"]},
    }
    ds = prepare(tmp_path, section)
    assert ds.meta["kind"] == "volume" and ds.meta["task"] == "binary"
    assert ds.meta["class_names"] == ["sphere", "shell"]
    assert ds.meta["input_shape"] == [1, 16, 16, 16]
    assert sum(ds.meta["split_sizes"].values()) == 200


def test_load_normalised_equals_normalise_of_load_and_keeps_one_copy(tmp_path):
    section = {"source": "synthetic_volumes", "options": {"n_volumes": 300, "size": 20}}
    ds = prepare(tmp_path, section)
    x, split = ds.load_normalised("train", chunk_mb=1)  # several chunks
    reference = ds.load("train")
    np.testing.assert_array_equal(x, ds.normalise(reference.x))
    np.testing.assert_array_equal(split.y, reference.y)
    np.testing.assert_array_equal(split.index, reference.index)
    assert x.dtype == np.float32 and split.x.size == 0  # no raw copy held beside it
    mean = ds.meta["normalisation"]["mean"][0]
    assert abs(float(reference.x.astype(np.float64).mean()) - mean) < 1e-9


def test_load_normalised_still_checks_the_file(tmp_path):
    section = {"source": "synthetic_volumes", "options": {"n_volumes": 200, "size": 12}}
    ds = prepare(tmp_path, section)
    path = ds.root / "train.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MedflowError, match="is not the file prepare wrote"):
        ds.load_normalised("train")


# --- models -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["cnn3d", "resnet18_3d"])
def test_volume_models_have_a_head_split_and_use_the_activation(arch):
    cfg = ModelConfig.from_schema(arch=arch, width=4, depth=2, activation="gelu")
    model = build_model(cfg, (1, 16, 16, 16), 3)
    x = torch.randn(2, 1, 16, 16, 16)
    features = model.backbone(x)
    assert features.shape == (2, model.feature_dim)
    assert model(x).shape == (2, 3)
    assert any(isinstance(m, nn.Conv3d) for m in model.backbone.modules())
    assert any(isinstance(m, nn.GELU) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    replace_head(model, 1)
    freeze_backbone(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]


def test_resnet18_3d_is_the_resnet18_layout_in_3d():
    model = build_model(ModelConfig.from_schema(arch="resnet18_3d", width=64), (1, 28, 28, 28), 2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert len(convs) == 17 + 3  # 1 stem + 16 block convs, 3 projection shortcuts
    assert model.feature_dim == 512
    assert convs[0].kernel_size == (3, 3, 3) and convs[0].stride == (1, 1, 1)  # 28^3 stem
    big = build_model(ModelConfig.from_schema(arch="resnet18_3d", width=8), (1, 64, 64, 64), 2)
    stem = next(m for m in big.modules() if isinstance(m, nn.Conv3d))
    assert stem.kernel_size == (7, 7, 7) and stem.stride == (2, 2, 2)


def test_volume_models_refuse_images():
    with pytest.raises(ValueError, match="needs volume inputs"):
        build_model(ModelConfig.from_schema(arch="cnn3d"), (1, 28, 28), 2)


def test_every_activation_builds_a_volume_model():
    for name in ACTIVATIONS:
        model = build_model(
            ModelConfig.from_schema(arch="cnn3d", width=2, depth=1, activation=name),
            (1, 8, 8, 8),
            2,
        )
        assert isinstance(model.backbone.act0, type(ACTIVATIONS[name]()))


def _config_file(tmp_path: Path, arch: str, source: dict) -> Path:
    import yaml

    config = {
        "classics": {"enabled": False},
        "datasets": {"t": source},
        "studies": {
            "s": {"target": "t", "model": {"arch": arch}, "refine": {"modes": ["scratch"]}}
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validation_refuses_volume_models_on_other_data_and_vice_versa(tmp_path, capsys):
    volumes = {"source": "synthetic_volumes", "options": {"n_volumes": 200}}
    images = {"source": "synthetic", "options": {"n_images": 200}}
    cases = [
        ("cnn3d", images, "'cnn3d' takes volume data, but datasets.t (the target) is image"),
        ("resnet18_3d", images, "'resnet18_3d' takes volume data"),
        ("cnn", volumes, "'cnn' takes image data, but datasets.t (the target) is volume data; "
         "use e.g. arch: cnn3d"),
        ("resnet18", volumes, "'resnet18' takes image data"),
        ("cnn1d", volumes, "'cnn1d' takes sequence data"),
    ]  # fmt: skip
    for arch, source, expected in cases:
        code = main(["validate", "--config", str(_config_file(tmp_path, arch, source))])
        err = capsys.readouterr().err
        assert code == 2, (arch, err)
        assert "studies.s.model.arch" in err and expected in err, err
    assert main(["validate", "--config", str(_config_file(tmp_path, "cnn3d", volumes))]) == 0
    assert arch_kinds("resnet1d") == ("sequence",)  # not a torchvision image ResNet


# --- augmentation -----------------------------------------------------------------------


def test_3d_augmentation_is_seeded_whole_batch_and_keeps_voxels():
    x = torch.arange(6 * 4 * 4 * 4, dtype=torch.float32).reshape(6, 1, 4, 4, 4)
    for kind in ("flip3d", "rot90_3d", "volume"):
        a = augment(x, kind, torch.Generator().manual_seed(5))
        b = augment(x, kind, torch.Generator().manual_seed(5))
        torch.testing.assert_close(a, b)
        assert a.shape == x.shape
        # Flips and quarter turns move voxels: each volume keeps its values, some move.
        for i in range(len(x)):
            assert torch.equal(a[i].flatten().sort().values, x[i].flatten().sort().values)
        assert not torch.equal(a, x)
        assert not torch.equal(a, augment(x, kind, torch.Generator().manual_seed(6)))


def test_rot90_3d_turns_volumes_in_all_three_planes():
    x = torch.zeros(64, 1, 5, 5, 5)
    x[:, 0, 0, 1, 2] = 1.0  # one marked voxel, off every axis of symmetry
    out = augment_volume(x, "rot90_3d", torch.Generator().manual_seed(0))
    positions = {tuple(torch.nonzero(v[0])[0].tolist()) for v in out}
    assert len(positions) > 8  # flips alone reach 8 positions; rotations reach more
    for v in out:
        assert v.sum() == 1.0


def test_volume_augments_leave_images_and_series_alone():
    gen = torch.Generator().manual_seed(0)
    images, series = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 16)
    assert torch.equal(augment(images, "volume", gen), images)
    assert torch.equal(augment(series, "flip3d", gen), series)


# --- training ---------------------------------------------------------------------------


def _train(data: TrainData, arch: str, **settings):
    run = RunConfig(
        ModelConfig.from_schema(arch=arch, width=4, depth=2),
        OptimConfig.from_schema(name="adam", lr=0.01),
        TrainConfig.from_schema(
            **{"epochs": 3, "batch_size": 16, "seed": 0, "device": "cpu", **settings}
        ),
    )
    return train(run, data)


@pytest.mark.parametrize("arch", ["cnn3d", "resnet18_3d"])
def test_volume_models_learn_a_volume_task_with_augmentation(tmp_path, arch):
    section = {
        "source": "synthetic_volumes",
        "options": {"n_volumes": 300, "size": 12, "classes": ["sphere", "shell"]},
    }
    data = TrainData.from_prepared(prepare(tmp_path, section))
    assert data.x_train.shape[1:] == (1, 12, 12, 12) and data.x_train.dtype == torch.float32
    result = _train(data, arch, augment="volume", monitor="val_accuracy")
    assert result.status == "finished"
    assert result.best_value > 0.8, result.history
    again = _train(data, arch, augment="volume", monitor="val_accuracy")
    assert again.best_value == result.best_value  # seeded: the same run twice


def test_an_oversized_batch_is_an_error_naming_train_batch_size():
    """On CUDA the real out-of-memory error is caught; on CPU there is no such error to catch
    (the kernel's OOM killer ends the process), so this runs only where a GPU is."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: CPU memory exhaustion cannot be caught in-process")
    free, _ = torch.cuda.mem_get_info()
    side = 64
    n = int(free // (side**3 * 4 * 8 * 2)) + 64  # two first-layer activations exceed it
    x = torch.zeros(n, 1, side, side, side)
    data = TrainData("binary", 2, x, torch.zeros(n, dtype=torch.int64), x[:2], torch.tensor([0, 1]))
    run = RunConfig(
        ModelConfig.from_schema(arch="cnn3d", width=8, depth=1),
        OptimConfig.from_schema(),
        TrainConfig.from_schema(
            epochs=1, batch_size=n, seed=0, device="cuda", resident_max_mb=0, amp=False
        ),
    )
    with pytest.raises(MedflowError, match=r"^train\.batch_size: a batch of .* lower train"):
        train(run, data)


def test_volume_memory_bench_runs_quick(tmp_path):
    from bench.common import Options
    from bench.volume_memory import run

    rows = run(Options(quick=True, out_dir=tmp_path, command="pytest"))
    assert [r["case"].rsplit(" ", 1)[-1] for r in rows] == ["prepare", "train", "evaluate"]
    assert all(0 < r["ratio"] < 8 and r["met"] for r in rows)
    written = json.loads((tmp_path / "volume_memory.json").read_text())
    assert written["config"]["size"] == 64 and written["phases"]["train"]["epoch_s"]


@pytest.mark.parametrize(("arch", "shape"), [("cnn", (1, 16, 16)), ("cnn3d", (1, 8, 8, 8))])
def test_first_block_stops_after_the_first_conv_its_norm_and_activation(arch, shape) -> None:
    from torch import nn as tnn

    from medflow.analysis.representation import first_block
    from medflow.ml.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig.from_schema(arch=arch), shape, 2).eval()
    x = torch.randn(2, *shape)
    children = list(model.backbone.children())
    conv = next(i for i, m in enumerate(children) if isinstance(m, tnn.Conv2d | tnn.Conv3d))
    expected = x
    with torch.no_grad():
        for module in children[: conv + 1]:
            expected = module(expected)
        for module in children[conv + 1 :]:
            if isinstance(module, tnn.Conv2d | tnn.Conv3d | tnn.MaxPool2d | tnn.MaxPool3d):
                break
            if isinstance(module, tnn.Dropout | tnn.Dropout2d | tnn.Dropout3d):
                break
            expected = module(expected)
        got = first_block(model, x)
    assert got.shape[1] == children[conv].out_channels
    torch.testing.assert_close(got, expected)
