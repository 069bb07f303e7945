"""Every shipped real-data config runs as shipped, through snakemake, on generated files
with the real keys, dtypes, shapes and split sizes of the datasets it names; shortened
only by --config overrides of epochs, trials and seeds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from medflow.tracking.client import Tracker, find_runs
from tests.conftest import REPO, run_snakemake
from tests.medmnist_files import write_medmnist_flag
from tests.readme_commands import run_readme_block

pytestmark = pytest.mark.slow

PROFILE = REPO / "workflow" / "profiles" / "default"
GENERATED_CAP = 800  # examples of a generated pretraining set in these runs


def _merged(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        inner = merged.get(key)
        both_dicts = isinstance(value, dict) and isinstance(inner, dict)
        merged[key] = _merged(inner, value) if both_dicts else value
    return merged


def _shortened(config: dict, *, trials: int = 1, extra: dict | None = None) -> list[str]:
    """--config values: one epoch everywhere, ``trials`` sweep trial(s), one refine seed, and
    generated pretraining sets of at most GENERATED_CAP examples (the user's files are
    read whole); ``extra`` is merged over them (one --config value per top-level key)."""
    studies = {}
    for name, study in config["studies"].items():
        short = {
            "train": {"epochs": 1},
            "sweep": {"n_trials": trials, "epochs": 1},
            "refine": {"seeds": [0]},
        }
        if study.get("pretrain"):
            short["pretrain"] = {"epochs": 1}
        studies[name] = short
    values = {"studies": studies}
    generated = {
        name: {"options": {key: min(value, GENERATED_CAP)}}
        for name, dataset in config["datasets"].items()
        for key, value in dataset.get("options", {}).items()
        if key in ("n_images", "n_series", "n_volumes")
    }
    if generated:
        values["datasets"] = generated
    values = _merged(values, extra or {})
    return [
        f"{key}=" + yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
        for key, value in values.items()
    ]


def _run_shipped(
    tmp_path: Path,
    config_name: str,
    readme_block: str | None = None,
    *,
    extra: dict | None = None,
    n_samples: dict[str, int] | None = None,
) -> tuple[dict, float]:
    """Run a shipped config on generated files of its medmnist datasets: through the README's
    own commands where it gives them (``readme_block``), else with the plain snakemake
    command. ``extra``: --config values merged over the shortening (e.g. another flag);
    ``n_samples`` replaces the generated files' split sizes."""
    path = REPO / "config" / config_name
    config = _merged(yaml.safe_load(path.read_text()), extra or {})
    for dataset in config["datasets"].values():
        if dataset["source"] == "medmnist":
            options = dataset["options"]
            root = tmp_path / options["root"]
            write_medmnist_flag(root, options["flag"], options["size"], n_samples=n_samples)
    overrides = _shortened(config, extra=extra)
    started = time.perf_counter()
    if readme_block:
        result = run_readme_block(tmp_path, readme_block, overrides)
    else:
        result = run_snakemake(
            "--profile", str(PROFILE), "--cores", "2", "--configfile", str(path),
            "--config", *overrides, workdir=tmp_path, timeout=1500,
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"{config_name}: shortened run took {elapsed:.0f} s")
    return config, elapsed


def _metrics(tmp_path: Path, study: str) -> dict:
    return json.loads((tmp_path / "results/evaluate" / study / "metrics.json").read_text())


def test_medmnist_transfer_config_runs_as_shipped(tmp_path):
    config, _ = _run_shipped(tmp_path, "medmnist.yaml", readme_block="medmnist")
    assert set(config["studies"]) == {"breastmnist", "pneumoniamnist"}
    for study, n_test in (("breastmnist", 156), ("pneumoniamnist", 624)):
        metrics = _metrics(tmp_path, study)
        assert metrics["n_test"] == n_test
        assert set(metrics["summary"]) >= {"finetune", "linear_probe", "scratch"}
        for activation in config["studies"][study]["sweep"]["space"]["activations"]:
            assert (tmp_path / f"results/pretrain/{study}/{activation}/model.pt").is_file()
    # both targets pretrain alike on OrganAMNIST: three backbones trained, not six
    tracker = Tracker.for_results(tmp_path / "results")
    pretrain_runs = [
        run
        for study in config["studies"]
        for run in find_runs(tracker, f"medflow/{study}")
        if run.data.tags["stage"] == "pretrain"
    ]
    assert len(pretrain_runs) == 3
    for activation in config["studies"]["pneumoniamnist"]["sweep"]["space"]["activations"]:
        own, shared = (
            tmp_path / f"results/pretrain/{study}/{activation}"
            for study in ("breastmnist", "pneumoniamnist")
        )
        assert (shared / "model.pt").read_bytes() == (own / "model.pt").read_bytes()
        result = json.loads((shared / "result.json").read_text())
        assert result["pretrained_by"] == "breastmnist"
        assert result["run_id"] == (own / "run_id.txt").read_text()
    meta = json.loads((tmp_path / "results/data/organamnist/meta.json").read_text())
    assert len(meta["class_names"]) == 11
    assert (tmp_path / "results/report/index.html").is_file()


def test_chestmnist_multilabel_config_runs_as_shipped(tmp_path):
    _run_shipped(tmp_path, "chestmnist.yaml")
    metrics = _metrics(tmp_path, "chestmnist")
    assert metrics["task"] == "multilabel" and metrics["n_test"] == 22433
    per_label = metrics["best_on_validation"]["per_class"]
    assert len(per_label) == 14
    assert all(0.0 <= row["auc"] <= 1.0 for row in per_label)
    assert "auc" in metrics["summary"]["scratch"]


def test_medmnist_plus_config_runs_as_shipped_without_downloading_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    _run_shipped(tmp_path, "medmnist_plus.yaml")
    for study in ("breastmnist128_imagenet", "breastmnist128_random"):
        metrics = _metrics(tmp_path, study)
        assert metrics["n_test"] == 156
    assert not (tmp_path / "torch-home").exists() or not any(
        (tmp_path / "torch-home").rglob("*.pth")
    )
