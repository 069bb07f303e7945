"""A study of one's own: its config file replaces the demo; what the config alone says is
checked before any job runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from medflow.config.schema import validate_config
from medflow.config.types import MedflowConfig
from medflow.errors import ConfigError, MedflowError
from medflow.ml.device import pick_device
from tests.conftest import REPO, run_cli, run_snakemake, tiny_mlp_study_config

pytestmark = pytest.mark.slow

DEMO_JOBS = ("breast_cancer", "gate_or", "classics", "synthetic")


def _planned(result) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_config_file_replaces_the_demo(tmp_path):
    config = tiny_mlp_study_config(
        train={"epochs": 2},
        sweep={"n_trials": 2, "workers": 1},
        refine={"modes": ["scratch"], "seeds": [0]},
    )
    config["classics"] = {}  # the schema default: off
    # As in a clone: the demo config sits in the working folder, and must not merge in.
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    out = _planned(
        run_snakemake("-n", "--configfile", str(_write(tmp_path, config)), workdir=tmp_path)
    )
    assert "results/evaluate/tiny/metrics.json" in out
    assert "results/data/digits/meta.json" in out
    for name in DEMO_JOBS:
        assert f"/{name}/" not in out and f"rule {name}" not in out, name
    assert not re.search(r"^classics\s+\d", out, re.M)


def test_without_a_config_file_the_demo_runs_with_command_line_overrides(tmp_path):
    out = _planned(run_snakemake("-n", "--config", "classics={enabled: false}", workdir=tmp_path))
    for name in ("breast_cancer", "digits", "synthetic"):
        assert f"results/data/{name}/meta.json" in out
    assert "results/evaluate/digits/metrics.json" in out
    assert "results/classics/" not in out
    demo = _planned(run_snakemake("-n", workdir=tmp_path))
    assert "results/classics/" in demo


def _refusal(config: dict) -> str:
    """The one-line error validation gives ``config`` (it must give one)."""
    with pytest.raises(ConfigError) as err:
        MedflowConfig.from_validated(validate_config(config, source="my.yaml"), source="my.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


DIGITS = {"source": "sklearn_digits"}
BREAST = {"source": "medmnist", "options": {"flag": "breastmnist"}}


@pytest.mark.parametrize(
    ("datasets", "study", "expected"),
    [
        (
            {"breast": BREAST, "synthetic": {"source": "synthetic", "options": {"image_size": 8}}},
            {"target": "breast", "pretrain": {"dataset": "synthetic"}, "model": {"arch": "cnn"}},
            r"studies\.s\.pretrain\.dataset: 'synthetic' gives image 1x8x8 inputs, but the "
            r"target 'breast' \(studies\.s\.target\) gives image 1x28x28",
        ),
        (
            {"derma": {"source": "medmnist", "options": {"flag": "dermamnist"}}, "digits": DIGITS},
            {"target": "digits", "pretrain": {"dataset": "derma"}, "model": {"arch": "cnn"}},
            r"'derma' gives image 3x28x28 inputs, but the target 'digits'.* gives image 1x8x8",
        ),
        (
            {"table": {"source": "sklearn_breast_cancer"}},
            {"target": "table", "model": {"arch": "cnn"}, "refine": {"modes": ["scratch"]}},
            r"studies\.s\.model\.arch: 'cnn' takes image data, but datasets\.table \(the "
            r"target\) is tabular data",
        ),
        (
            {"table": {"source": "sklearn_breast_cancer"}, "digits": DIGITS},
            {"target": "table", "pretrain": {"dataset": "digits"}, "model": {"arch": "mlp"}},
            r"pretrain\.dataset: 'digits' is image data, but the target 'table'",
        ),
        (
            {"digits": DIGITS},
            {"target": "digit", "refine": {"modes": ["scratch"]}},
            r"studies\.s\.target: no dataset named 'digit'",
        ),
        (
            {"digits": DIGITS},
            {"target": "digits", "refine": {"modes": ["scratch", "linear_probe"]}},
            r"studies\.s\.refine\.modes: linear_probe need a pretrained backbone",
        ),
        (
            {
                "cost": {
                    "source": "csv",
                    "options": {"path": "x.csv", "label": "y", "task": "regression"},
                }
            },
            {"target": "cost", "train": {"monitor": "val_auc"}, "refine": {"modes": ["scratch"]}},
            r"studies\.s\.train\.monitor: val_auc needs class labels, but "
            r"datasets\.cost\.options\.task is regression",
        ),
        (
            {"digits": DIGITS},
            {"target": "digits", "sweep": {"space": {"lr": [0.001, float("inf")]}}},
            r"studies\.s\.sweep\.space\.lr\[1\]: inf is not a finite number",
        ),
        (
            {"digits": DIGITS},
            {"target": "digits", "optim": {"weight_decay": float("nan")}},
            r"studies\.s\.optim\.weight_decay: nan is not a finite number",
        ),
    ],
)
def test_what_the_config_alone_shows_is_refused_at_validation(datasets, study, expected):
    assert re.search(expected, _refusal({"datasets": datasets, "studies": {"s": study}}))


def test_matching_shapes_pass_and_the_cli_refuses_in_one_line(tmp_path):
    datasets = {
        "breast": BREAST,
        "synthetic": {"source": "synthetic", "options": {"image_size": 28}},
    }
    study = {"target": "breast", "pretrain": {"dataset": "synthetic"}, "model": {"arch": "cnn"}}
    good = {"datasets": datasets, "studies": {"s": study}}
    assert MedflowConfig.from_validated(validate_config(good)).study("s").target == "breast"
    datasets["synthetic"]["options"]["image_size"] = 64
    result = run_cli("validate", "--config", str(_write(tmp_path, good)))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "gives image 1x64x64 inputs" in result.stderr


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message of a machine without CUDA"
)
def test_a_cuda_device_without_a_gpu_is_one_line_naming_the_key():
    with pytest.raises(
        MedflowError, match=r"^train\.device: 'cuda:1', but this machine has no usable CUDA GPU"
    ):
        pick_device("cuda:1")
