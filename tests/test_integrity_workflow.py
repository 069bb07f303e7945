"""Integrity through the real entry points: unsafe names, failed re-prepares, bounded CIs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medflow.stats.intervals import aggregate_over_seeds
from medflow.stats.summary import summarize_modes
from tests.conftest import run_cli, run_snakemake


@pytest.mark.parametrize(
    "name",
    ["../../../x", "/abs/path", "a b", "tab\t;echo>INJECTED;", "", ".hidden", "a+b", "x|y"],
    ids=["traversal", "absolute", "space", "shell", "empty", "leading-dot", "plus", "pipe"],
)
@pytest.mark.parametrize("section", ["datasets", "studies"])
def test_unsafe_names_are_refused_when_the_config_is_validated(tmp_path, name, section):
    config = {"datasets": {"ok": {"source": "sklearn_digits"}}, "classics": {"enabled": False}}
    if section == "datasets":
        config["datasets"][name] = {"source": "sklearn_digits"}
    else:
        config["studies"] = {name: {"target": "ok"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("validate", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{section}: {name!r} is not allowed: A dataset or study name" in result.stderr
    assert not (tmp_path / "INJECTED").exists()


def test_a_failed_re_prepare_keeps_the_earlier_preparation(tmp_path: Path):
    def prepare(per_class: int):
        config = {
            "datasets": {"d": {"source": "sklearn_digits", "train_per_class": per_class}},
            "classics": {"enabled": False},
        }
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        return run_snakemake(
            "--configfile",
            str(tmp_path / "c.yaml"),
            "--cores",
            "1",
            "results/data/d/meta.json",
            workdir=tmp_path,
        )

    assert prepare(5).returncode == 0
    folder = tmp_path / "results" / "data" / "d"
    before = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    failed = prepare(100000)
    assert failed.returncode != 0
    assert "train_per_class=100000 but class '0' has only" in failed.stderr
    assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == before


def test_seed_intervals_of_bounded_metrics_stay_in_their_range():
    assert aggregate_over_seeds([0.0, 0.1])["ci_low"] < 0  # unbounded: the raw t-interval
    low = aggregate_over_seeds([0.0, 0.1], bounds=(0.0, 1.0))
    assert low["ci_low"] == 0.0 and low["ci_high"] > 0.1
    per_seed = {
        "finetune": {0: {"accuracy": 1.0, "mse": 0.01}, 1: {"accuracy": 0.9, "mse": 0.3}},
        "scratch": {0: {"accuracy": 0.0, "mse": 0.5}, 1: {"accuracy": 0.1, "mse": 0.02}},
    }
    summary = summarize_modes(per_seed)
    assert summary["finetune"]["accuracy"]["ci_high"] == 1.0
    assert summary["scratch"]["accuracy"]["ci_low"] == 0.0
    assert summary["finetune"]["mse"]["ci_low"] == 0.0
    gain = summary["transfer_gain"]["accuracy"]
    assert -1.0 <= gain["ci_low"] <= gain["mean"] <= gain["ci_high"] <= 1.0
