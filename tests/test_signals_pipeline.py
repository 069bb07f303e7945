"""The signals DAG through snakemake on a tiny config: a 1-D CNN pretrained on synthetic
ECG-like series, swept, refined in all three modes on a small target of three classes,
evaluated and reported, with every run in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medflow.analysis.baseline import LOGISTIC, NEAREST
from medflow.data.format import PreparedDataset
from medflow.layout import Layout
from tests.conftest import run_snakemake
from tests.pipeline_checks import assert_tiny_dag_results
from tests.test_pipeline import load_study

pytestmark = pytest.mark.slow


def tiny_signals_config(arch: str = "cnn1d") -> dict:
    return {
        "datasets": {
            "ecg_target": {
                "source": "synthetic_signals",
                "seed": 7,
                "options": {
                    "n_series": 240,
                    "length": 64,
                    "noise": 0.1,
                    "classes": ["sinus", "t_inversion", "bundle_branch_block"],
                },
                "train_per_class": 8,
                "split": {"val_fraction": 0.25, "test_fraction": 0.25},
            },
            "ecg_source": {
                "source": "synthetic_signals",
                "options": {"n_series": 400, "length": 64},
                "split": {"val_fraction": 0.2, "test_fraction": 0.1},
            },
        },
        "classics": {"enabled": False},
        "studies": {
            "tiny": {
                "target": "ecg_target",
                "pretrain": {"dataset": "ecg_source", "epochs": 2, "batch_size": 64},
                "model": {"arch": arch, "width": 4, "depth": 2},
                "train": {
                    "epochs": 2,
                    "batch_size": 16,
                    "monitor": "val_accuracy",
                    "patience": 0,
                    "augment": "sequence",
                },
                "sweep": {
                    "n_trials": 2,
                    "workers": 1,
                    "epochs": 2,
                    "pruner": "none",
                    "space": {
                        "optimizers": ["adam"],
                        "activations": ["relu"],
                        "lr": [0.001, 0.01],
                        "freeze": ["finetune", "linear_probe"],
                    },
                },
                "refine": {"modes": ["finetune", "linear_probe", "scratch"], "seeds": [0]},
                "evaluate": {"bootstrap": 100},
            }
        },
    }


def test_signals_dag_pretrain_sweep_refine_evaluate_report(tmp_path: Path):
    config = tiny_signals_config()
    path = tmp_path / "signals.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake("--cores", "2", "--configfile", str(path), workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert_tiny_dag_results(tmp_path, config, load_study(tmp_path))
    target = PreparedDataset.open(Layout(tmp_path / "results").prepared("ecg_target"))
    assert target.meta["kind"] == "sequence" and target.meta["input_shape"] == [1, 64]
    assert target.meta["split_sizes"]["train"] == 24
    metrics = json.loads((tmp_path / "results/evaluate/tiny/metrics.json").read_text())
    assert {"finetune", "linear_probe", "scratch"} <= set(metrics["summary"])
    report = (tmp_path / "results/report/index.html").read_text()
    signals = report.split('id="signals-tiny"', 1)[1].split('id="classics"', 1)[0]
    assert "report-error" not in signals
    # Example series per class and the best 1-D CNN's first-layer filters.
    assert signals.count("data:image/png;base64,") == 2
    # The classical baselines on the same split, and the saliency of a few test series.
    baseline = json.loads((tmp_path / "results/evaluate/tiny/analysis/baseline.json").read_text())
    methods = [b["method"] for b in baseline["baselines"]]
    assert methods == [NEAREST, LOGISTIC]
    assert all(0.0 <= b["metrics"]["accuracy"] <= 1.0 for b in baseline["baselines"])
    assert baseline["n_test"] == target.meta["split_sizes"]["test"]
    shown = report.split('id="baselines-tiny"', 1)[1].split("</section>", 1)[0]
    assert NEAREST in shown and "ours: finetune" in shown
    representation = json.loads(
        (tmp_path / "results/evaluate/tiny/analysis/representation.json").read_text()
    )
    assert [f["file"] for f in representation["figures"]] == ["saliency.png"]
    assert (tmp_path / "results/evaluate/tiny/analysis/figures/saliency.png").stat().st_size > 0
