"""The real Snakemake workflow on tiny configs: DAG, prepare jobs, reruns, lint."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, run_snakemake, write_clinical_csv, write_medmnist_npz

pytestmark = pytest.mark.slow


def tiny_config(tmp_path: Path) -> Path:
    (tmp_path / "inputs").mkdir()
    csv = write_clinical_csv(tmp_path / "inputs" / "mi.csv")
    write_medmnist_npz(tmp_path / "inputs" / "breastmnist.npz")
    config = {
        "datasets": {
            "gate_xor": {"source": "gates", "options": {"gate": "XOR"}},
            "breast_cancer": {"source": "sklearn_breast_cancer"},
            "digits": {"source": "sklearn_digits", "train_per_class": 5},
            "synthetic": {"source": "synthetic", "options": {"n_images": 480, "image_size": 8}},
            "clinical": {"source": "csv", "options": {"path": str(csv), "label": "heart_attack"}},
            "breast_us": {
                "source": "medmnist",
                "options": {"root": str(tmp_path / "inputs"), "flag": "breastmnist"},
            },
        },
        "classics": {"enabled": False},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dry_run_of_default_config_prints_the_dag(tmp_path):
    result = run_snakemake(
        "-n", "--configfile", str(REPO / "config/config.yaml"), workdir=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    datasets = ("gate_or", "gate_and", "gate_xor", "breast_cancer", "digits", "synthetic")
    for name in (*datasets, "ecg_pretrain", "ecg_target"):
        assert f"results/data/{name}/meta.json" in out
    assert re.search(r"prepare\s+8", out)
    for study in ("breast_cancer", "digits", "ecg"):
        assert f"results/evaluate/{study}/metrics.json" in out


def test_prepare_all_sources_then_nothing_to_do_then_targeted_rerun(tmp_path):
    config = tiny_config(tmp_path)
    first = run_snakemake("--cores", "2", "--configfile", str(config), workdir=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    names = yaml.safe_load(config.read_text())["datasets"]
    for name in names:
        meta = json.loads((tmp_path / f"results/data/{name}/meta.json").read_text())
        assert meta["name"] == name and len(meta["content_hash"]) == 16
        assert (tmp_path / f"results/logs/prepare/{name}.log").exists()
    assert not list((tmp_path / "results").rglob(".*.tmp-*"))

    second = run_snakemake("--cores", "2", "--configfile", str(config), workdir=tmp_path)
    assert second.returncode == 0
    assert "Nothing to be done" in second.stdout + second.stderr

    # Changing one dataset's settings re-runs that dataset only.
    changed = yaml.safe_load(config.read_text())
    changed["datasets"]["digits"]["train_per_class"] = 6
    config.write_text(yaml.safe_dump(changed))
    dry = run_snakemake("-n", "--configfile", str(config), workdir=tmp_path, timeout=120)
    assert re.search(r"prepare\s+1\b", dry.stdout), dry.stdout
    assert "dataset=digits" in dry.stdout


def test_invalid_config_stops_snakemake_naming_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "datasets:\n  d:\n    source: gates\n    train_per_clas: 3\nclassics: {enabled: false}\n"
    )
    result = run_snakemake("-n", "--configfile", str(bad), workdir=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{bad}: datasets.d: unknown key 'train_per_clas'" in output
    assert "(did you mean 'train_per_class'?)" in output
    assert not (tmp_path / "results").exists()


def test_failing_prepare_job_fails_the_run_and_shows_the_reason(tmp_path):
    config = tmp_path / "c.yaml"
    missing = tmp_path / "nowhere.csv"
    config.write_text(
        yaml.safe_dump(
            {
                "datasets": {
                    "t": {"source": "csv", "options": {"path": str(missing), "label": "y"}}
                },
                "classics": {"enabled": False},
            }
        )
    )
    result = run_snakemake("--cores", "1", "--configfile", str(config), workdir=tmp_path)
    assert result.returncode != 0
    assert f"csv: file not found: {missing}" in result.stdout + result.stderr
    assert not (tmp_path / "results/data/t/meta.json").exists()


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_snakemake_lint_is_clean_except_the_conda_advice():
    result = _run(str(BIN / "snakemake"), "--lint")
    advice = re.findall(r"^\s+\* (.+?):?$", result.stdout + result.stderr, flags=re.M)
    others = [a for a in advice if "conda environment or container" not in a]
    assert others == [], result.stdout + result.stderr


def test_snakefmt_and_ruff_are_clean():
    fmt = _run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = _run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout


FILE_NAME = re.compile(
    r"""(["'])[^"'\s]*\.(pt|json|txt|csv|png|safetensors|done|log|html|db|journal|lock)\1"""
)


def test_file_names_are_spelled_only_in_the_layout():
    """Every results path comes from medflow.layout (rules and code agree by construction)."""
    files = [*sorted((REPO / "src/medflow").rglob("*.py")), REPO / "Snakefile"]
    files += sorted((REPO / "workflow/rules").glob("*.smk"))
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        if path.name != "layout.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if FILE_NAME.search(line)
    ]
    assert found == [], "\n".join(found)
