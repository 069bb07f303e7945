"""A study of one's own: its config file replaces the demo; what the config alone says is
checked before any job runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake, tiny_mlp_study_config

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
