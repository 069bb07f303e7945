"""The benchmarks run end to end in --quick mode and write valid JSON (times nothing)."""

from __future__ import annotations

import json

import torch
import yaml

from bench import gpu
from bench.__main__ import MODULES, main
from bench.amp_seeds import STUDIES, seeded_config
from bench.data_path import REFERENCE_TRANSFORM, Images, MedMNISTStyle, normalise
from bench.workflow_overhead import CONFIG
from medflow.config.schema import validate_config
from medflow.ml.work import forward_macs


def test_quick_run_writes_every_json_and_a_row_per_case(tmp_path, monkeypatch):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(var, raising=False)  # pin_threads and quick logging set them
    rows = main(["--quick", "--out", str(tmp_path)])
    for name in (*MODULES, "summary"):
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        env = payload["environment"]
        assert env["date"] and env["cpu_model"] and env["cpus"] and "bench" in env["command"]
        assert env["versions"]["torch"] and env["versions"]["mlflow"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"] == rows
    assert {r["case"].split(":")[0] for r in rows} >= {"data path mlp 28x28", "logging", "sweep"}
    assert all(set(r) == {"case", "ratio", "goal", "met", "note"} for r in rows)


def test_reference_dataset_gives_the_values_medflow_normalises_to():
    images = Images.random(16, 28)
    dataset = MedMNISTStyle(images.train_x, images.train_y, REFERENCE_TRANSFORM)
    x, target = dataset[3]
    assert torch.equal(x, normalise(images.train_x)[3])
    assert target.shape == (1,)


def test_gpu_code_paths_run_on_cpu():
    """No GPU here: exercise the GPU benchmark's pieces on the CPU with a tiny batch."""
    model = gpu.resnet18(28)
    assert abs(forward_macs(model, (3, 28, 28)) / 1e9 - 0.457) < 0.001
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("Some Other GPU") is None
    x, y = torch.randn(8, 3, 28, 28), torch.arange(8) % 10
    assert gpu.resident_steps(model, x, y, 4, bf16=False)(1) > 0
    images = Images.random(8, 28)
    rgb = images.train_x[..., None].repeat(3, axis=-1)
    assert gpu.reference_steps(gpu.resnet18(28), rgb, images.train_y, 4)(1) > 0


def test_opt_in_amp_seeds_configs_are_valid_and_quick_mode_skips(tmp_path):
    shipped = yaml.safe_load(CONFIG.read_text())
    config = validate_config(seeded_config(shipped, False, 3), source="amp_seeds")
    assert sorted(config["studies"]) == sorted(STUDIES)
    assert {s["pretrain"]["seed"] for s in config["studies"].values()} == {3}
    assert {s["train"]["amp"] for s in config["studies"].values()} == {False}
    assert config["classics"]["enabled"] is False
    rows = main(["--quick", "--only", "amp_seeds", "--out", str(tmp_path)])
    assert [r["note"] for r in rows] == ["skipped: quick"]
    assert json.loads((tmp_path / "amp_seeds.json").read_text())["skipped"] == "quick"
