"""README "Your own study": its commands, run as written on generated files (a folder of
images, a clinical table), shortened only by --config overrides of epochs, trials, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.readme_commands import run_readme_block
from tests.test_csv_options import cells, template_csv

pytestmark = pytest.mark.slow


def _shortened(study: str, pretrain: bool) -> str:
    short = "train: {epochs: 1}, sweep: {n_trials: 2, epochs: 1}, refine: {seeds: [0]}"
    if pretrain:
        short += ", pretrain: {epochs: 1}"
    return f"studies={{{study}: {{{short}}}}}"


def _write_images(root: Path, per_class: int = 30) -> None:
    """Two classes of 16-bit greyscale PNGs and one of RGB JPEGs, of varied sizes."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("benign", "malignant", "normal")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = int(rng.integers(40, 90))
            if c < 2:
                pixels = rng.integers(0, 30000, size=(size, size)) + 20000 * c
                Image.fromarray(pixels.astype(np.uint16)).save(root / name / f"{i:03d}.png")
            else:
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / f"{i:03d}.jpg")


def _check_study(workdir: Path, study: str, modes: set[str]) -> dict:
    metrics = json.loads((workdir / "results/evaluate" / study / "metrics.json").read_text())
    assert set(metrics["summary"]) >= modes
    assert (workdir / "results/report/index.html").is_file()
    return metrics


def test_readme_commands_from_a_folder_of_images(tmp_path):
    _write_images(tmp_path / "data/images")
    result = run_readme_block(tmp_path, "images", _shortened("my_images", pretrain=True))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "valid" in result.stdout + result.stderr
    metrics = _check_study(tmp_path, "my_images", {"finetune", "linear_probe", "scratch"})
    assert metrics["n_test"] == 18  # 20% of 90 images, stratified
    meta = json.loads((tmp_path / "results/data/my_images/meta.json").read_text())
    assert meta["input_shape"] == [1, 64, 64]


def test_readme_commands_from_a_clinical_table(tmp_path):
    template_csv(tmp_path / "data/clinical.csv")
    result = run_readme_block(tmp_path, "table", _shortened("clinical", pretrain=False))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    _check_study(tmp_path, "clinical", {"scratch"})
    meta = json.loads((tmp_path / "results/data/clinical/meta.json").read_text())
    # The template's options as shipped: positive class, dropped ID, one-hot, imputation.
    assert meta["class_names"] == ["no", "yes"]
    assert "patient_id" not in meta["feature_names"]
    assert {"sex=female", "sex=male", "smoker=current"} <= set(meta["feature_names"])
    assert meta["notes"]["missing"] == "impute_median"
    imputed = {k.split(":")[1] for k in meta["notes"] if k.startswith("imputed_value:")}
    assert imputed == {"age", "bmi", "systolic_bp"}
    assert cells(meta["notes"]["missing_cells:age"]) == 3  # "train 2, val 1, test 0"
    assert cells(meta["notes"]["missing_cells:smoker"]) == 2
    assert sum(meta["split_sizes"].values()) == 200
    report = (tmp_path / "results/report/index.html").read_text()
    assert "note: imputed_value:age" in report and "note: positive_class" in report
