"""The shipped volume configs run as shipped, through snakemake, on generated files with the
real keys, dtypes, shapes and split sizes of the MedMNIST 3-D sets they name; shortened only
by --config overrides of epochs, trials, seeds and the size of generated pretraining sets."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.conftest import REPO, run_snakemake
from tests.test_shipped_configs import PROFILE, _merged, _run_shipped, _shortened

pytestmark = pytest.mark.slow


def _section(report: str, section_id: str) -> str:
    return report.split(f'id="{section_id}"', 1)[1].split("</section>", 1)[0]


def test_medmnist3d_config_runs_as_shipped(tmp_path):
    config, _ = _run_shipped(tmp_path, "medmnist3d.yaml")
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
    volumes = _section(report, f"volumes-{study}")
    assert "report-error" not in volumes
    assert volumes.count("data:image/png;base64,") == 1  # the slice montage
    baselines = _section(report, f"baselines-{study}")
    assert "ResNet-18+3D" in baselines and "Table 4" in baselines and "ours: scratch" in baselines
    # the generated file has the release's split sizes but not its bytes: the caption says so
    assert "MD5 differs from the official file" in baselines


def test_medmnist3d_config_refines_on_adrenalmnist3d_by_changing_the_flag(tmp_path):
    """The config header's promise: another 3-D set as the target is one changed flag. Adrenal
    gland CT masks, 1188/98/298 volumes, with their own published baselines (pretraining,
    which the NoduleMNIST3D test covers, on fewer generated volumes)."""
    flag = {"datasets": {"nodulemnist3d": {"options": {"flag": "adrenalmnist3d"}}}}
    smaller_pretraining = {"datasets": {"shapes3d": {"options": {"n_volumes": 240}}}}
    one_worker = {"studies": {"nodulemnist3d": {"sweep": {"workers": 1}}}}  # for 1 trial
    extra = _merged(_merged(flag, smaller_pretraining), one_worker)
    config, _ = _run_shipped(tmp_path, "medmnist3d.yaml", extra=extra)
    (study,) = config["studies"]
    meta = json.loads((tmp_path / "results/data/nodulemnist3d/meta.json").read_text())
    assert meta["notes"]["flag"] == "adrenalmnist3d" and meta["class_names"] == [
        "normal",
        "hyperplasia",
    ]
    assert meta["split_sizes"] == {"train": 1188, "val": 98, "test": 298}
    metrics = json.loads((tmp_path / f"results/evaluate/{study}/metrics.json").read_text())
    assert metrics["n_test"] == 298
    baselines = _section((tmp_path / "results/report/index.html").read_text(), f"baselines-{study}")
    assert "Published test AUC/ACC for adrenalmnist3d" in baselines
    assert "ResNet-50+3D" in baselines and "ours: finetune" in baselines


@pytest.mark.gpu
def test_medmnist3d_64_config_runs_as_shipped_on_a_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("config/medmnist3d_64.yaml trains a 3-D ResNet-18 at 64^3: a GPU's job")
    _, _ = _run_shipped(tmp_path, "medmnist3d_64.yaml")
    metrics = json.loads((tmp_path / "results/evaluate/nodulemnist3d_64/metrics.json").read_text())
    assert metrics["n_test"] == 310


def test_medmnist3d_64_config_runs_end_to_end_on_a_cpu_when_made_small(tmp_path):
    """Where no GPU is: the 64^3 path end to end (MedMNIST+ file names, 64^3 volumes through
    the 3-D ResNet-18, montage, filters, report), on small generated files (24/12/12 volumes)
    and a width-4 network; the shipped sizes are the GPU test's."""
    small = {
        "studies": {
            "nodulemnist3d_64": {
                "model": {"width": 4},
                "train": {"batch_size": 8},
                "sweep": {"workers": 1},  # for its 1 trial
            }
        }
    }
    sizes = {"train": 24, "val": 12, "test": 12}
    config, _ = _run_shipped(tmp_path, "medmnist3d_64.yaml", extra=small, n_samples=sizes)
    meta = json.loads((tmp_path / "results/data/nodulemnist3d_64/meta.json").read_text())
    assert meta["input_shape"] == [1, 64, 64, 64] and meta["split_sizes"] == sizes
    metrics = json.loads((tmp_path / "results/evaluate/nodulemnist3d_64/metrics.json").read_text())
    assert metrics["n_test"] == 12
    assert set(metrics["summary"]) >= set(config["studies"]["nodulemnist3d_64"]["refine"]["modes"])
    report = (tmp_path / "results/report/index.html").read_text()
    assert _section(report, "volumes-nodulemnist3d_64").count("data:image/png;base64,") == 1
    baselines = _section(report, "baselines-nodulemnist3d_64")
    assert "NOT the official" not in baselines and "not the official release" in baselines


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
