"""The shipped volume configs run as shipped, through snakemake, on generated files with the
real keys, dtypes, shapes and split sizes of the MedMNIST 3-D sets they name; shortened only
by --config overrides of epochs, trials, seeds and the size of generated pretraining sets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO, run_snakemake
from tests.medmnist_files import write_medmnist_flag
from tests.test_shipped_configs import PROFILE, _shortened

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, config_name: str, timeout: int = 1500) -> tuple[dict, float]:
    path = REPO / "config" / config_name
    config = yaml.safe_load(path.read_text())
    for dataset in config["datasets"].values():
        if dataset["source"] == "medmnist":
            options = dataset["options"]
            write_medmnist_flag(tmp_path / options["root"], options["flag"], options["size"])
    started = time.perf_counter()
    result = run_snakemake(
        "--profile", str(PROFILE), "--cores", "2", "--configfile", str(path),
        "--config", *_shortened(config), workdir=tmp_path, timeout=timeout,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"{config_name}: shortened run took {elapsed:.0f} s")
    return config, elapsed


def test_medmnist3d_config_runs_as_shipped(tmp_path):
    config, _ = _run(tmp_path, "medmnist3d.yaml")
    (study,) = config["studies"]
    meta = json.loads((tmp_path / "results/data/nodulemnist3d/meta.json").read_text())
    assert meta["kind"] == "volume" and meta["input_shape"] == [1, 28, 28, 28]
    assert meta["split_sizes"] == {"train": 1158, "val": 165, "test": 310}
    metrics = json.loads((tmp_path / f"results/evaluate/{study}/metrics.json").read_text())
    assert metrics["n_test"] == 310
    assert set(metrics["summary"]) >= {"finetune", "linear_probe", "scratch"}
    for activation in config["studies"][study]["sweep"]["space"]["activations"]:
        assert (tmp_path / f"results/pretrain/{study}/{activation}/model.pt").is_file()
    analysis = tmp_path / f"results/evaluate/{study}/analysis"
    representation = json.loads((analysis / "representation.json").read_text())
    assert representation["status"] == "done", representation
    assert {f["alt"] for f in representation["figures"]} == {
        "first-layer 3-D filters as slices",
        "feature maps as slices",
    }
    report = (tmp_path / "results/report/index.html").read_text()
    volumes = report.split(f'id="volumes-{study}"', 1)[1].split("</section>", 1)[0]
    assert "report-error" not in volumes
    assert volumes.count("data:image/png;base64,") == 1  # the slice montage
    baselines = report.split(f'id="baselines-{study}"', 1)[1].split("</section>", 1)[0]
    assert "ResNet-18+3D" in baselines and "Table 4" in baselines and "ours: scratch" in baselines


@pytest.mark.gpu
def test_medmnist3d_64_config_runs_as_shipped_on_a_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("config/medmnist3d_64.yaml trains a 3-D ResNet-18 at 64^3: a GPU's job")
    _, _ = _run(tmp_path, "medmnist3d_64.yaml")
    metrics = json.loads((tmp_path / "results/evaluate/nodulemnist3d_64/metrics.json").read_text())
    assert metrics["n_test"] == 310


def test_medmnist3d_64_config_validates_and_plans(tmp_path):
    """Where no GPU is: the 64^3 config passes validation and snakemake plans every job."""
    path = REPO / "config" / "medmnist3d_64.yaml"
    config = yaml.safe_load(path.read_text())
    result = run_snakemake(
        "--profile", str(PROFILE), "--cores", "2", "--configfile", str(path),
        "--config", *_shortened(config), "--dry-run", workdir=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "pretrain" in result.stdout and "refine" in result.stdout
