"""Shared fixtures: small generated inputs in the real file layouts, and CLI runners."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medflow.ml.device import torch_threads
from medflow.tracking.client import Tracker

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_medmnist_npz(
    path: Path,
    n_classes: int = 2,
    channels: int = 1,
    size: int = 28,
    counts: tuple[int, int, int] = (40, 12, 16),
    multilabel: bool = False,
    seed: int = 0,
) -> Path:
    """A small .npz in exactly the MedMNIST layout (uint8 images, (N, 1) or (N, L) labels)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        shape = (n, size, size) if channels == 1 else (n, size, size, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, n_classes), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(n) % n_classes).astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_imagefolder(root: Path, classes=("benign", "malignant"), per_class=12, size=20) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            pixels[..., 0] = 40 * c  # class-dependent red channel
            Image.fromarray(pixels).save(root / name / f"img_{i:03d}.png")
    return root


def write_clinical_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    """The lecture's example: blood pressure and BMI -> heart attack (MI)."""
    rng = np.random.default_rng(seed)
    bp = rng.normal(130, 20, n).round(1)
    bmi = rng.normal(27, 5, n).round(1)
    risk = 0.05 * (bp - 130) + 0.2 * (bmi - 27)
    mi = (risk + rng.normal(0, 1, n) > 0).astype(int)
    lines = ["blood_pressure,bmi,heart_attack"] + [
        f"{a},{b},{c}" for a, b, c in zip(bp, bmi, mi, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_mlp_study_config(train: dict, sweep: dict, refine: dict) -> dict:
    """A one-study config: 8 labelled digits per class, a small MLP, no pretraining."""
    return {
        "datasets": {
            "digits": {
                "source": "sklearn_digits",
                "split": {"val_fraction": 0.2, "test_fraction": 0.3},
                "train_per_class": 8,
            }
        },
        "classics": {"enabled": False},
        "studies": {
            "tiny": {
                "target": "digits",
                "model": {"arch": "mlp", "hidden_sizes": [16]},
                "train": train,
                "sweep": sweep,
                "refine": refine,
            }
        },
    }


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``medflow`` console script as a user would."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "medflow"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def path_without_venv() -> str:
    """PATH minus the virtualenv's bin: rules must not rely on an activated environment."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(p for p in parts if Path(p).resolve() != BIN.resolve())


def run_snakemake(*args: str, workdir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real workflow with the repo's Snakefile in a scratch working directory."""
    env = {**os.environ, "PATH": path_without_venv()}
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Test models are tiny: one intra-op thread is faster than several and does not
    collapse when the machine is busy (2 spinning threads under load took 4x longer)."""
    with torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Tests that call ``medflow.cli.main`` in-process bind handlers to pytest's captured
    stderr, which is closed after the test; put the root logger back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def repo() -> Path:
    return REPO


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated store per session; MLflow's schema migration alone takes ~10 s."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    started = time.perf_counter()
    Tracker(sqlite_uri(path))
    print(f"\nfirst-run SQLite migration: {time.perf_counter() - started:.1f}s")
    return path


@pytest.fixture
def tracker(migrated_db: Path, tmp_path: Path) -> Tracker:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated_db, db)
    return Tracker(sqlite_uri(db), tmp_path / "mlartifacts")


# Files of the longest end-to-end tests (4-9 minutes each under -n 2 on 2 cores in CI on
# 2026-12-04): dealt out first, so that they start at once, one per worker.
LONGEST_TEST_FILES = frozenset(
    {"test_shipped_configs.py", "test_readme_own_study.py", "test_volumes_pipeline.py"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end (``slow``) tests first in each worker's share: xdist's worksteal hands
    worker k the k-th contiguous slice of this list and later moves only the tail of a
    queue, so each slice starts with its own slow tests (dealt out in turn) and short tests
    fill the gaps. Sorting all slow tests to the front had put every one of them in the
    first worker's slice, one after another."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    slow.sort(key=lambda item: item.path.name not in LONGEST_TEST_FILES)  # stable: else as is
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    rest = iter(fast)
    ordered: list[pytest.Item] = []
    for k in range(workers):
        ordered += slow[k::workers]
        end = len(items) * (k + 1) // workers  # where xdist cuts worker k's slice
        ordered += itertools.islice(rest, max(0, end - len(ordered)))
    items[:] = ordered + list(rest)
