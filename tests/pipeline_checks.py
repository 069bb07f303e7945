"""What a finished tiny-DAG run must leave behind, whichever executor ran it: MLflow runs
nested, tagged and complete, the Optuna study consistent with them, the stage outputs."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd

from medflow.config.schema import validate_config
from medflow.ml.device import CPU_BF16_MIN_MACS_PER_STEP, cpu_has_bf16
from medflow.ml.models import ModelConfig, build_model
from medflow.ml.work import forward_macs
from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs
from tests.report_checks import assert_report_complete

FINISHED = ("COMPLETE", "PRUNED")
# The models with 1-D or 2-D convolutions: train.amp auto trains them in bf16 on a bf16 CPU
# (where a step does enough work).
BF16_ON_CPU_ARCHS = {
    "cnn",
    "resnet18",
    "resnet34",
    "resnet50",
    "cnn1d",
    "resnet1d",
    "inception_time",
}


def _precision(workdir: Path, spec: dict, dataset: str, batch_size: int) -> str:
    """train.amp auto: a 1-D/2-D conv model trains in bf16 exactly where this CPU does bf16 in
    hardware and a training step does at least CPU_BF16_MIN_MACS_PER_STEP multiply-adds."""
    if not (spec["model"]["arch"] in BF16_ON_CPU_ARCHS and spec["train"]["amp"] == "auto"):
        return "float32"
    meta = json.loads((workdir / "results/data" / dataset / "meta.json").read_text())
    shape = tuple(meta["input_shape"])
    model = build_model(ModelConfig.from_section(spec["model"]), shape, meta["n_classes"])
    enough = forward_macs(model, shape) * batch_size >= CPU_BF16_MIN_MACS_PER_STEP
    return "bfloat16" if enough and cpu_has_bf16() else "float32"


def assert_tiny_dag_results(
    workdir: Path, config: dict, study: optuna.Study, report: bool = True
) -> None:
    """Check the results of ``config`` (a tests.test_pipeline.tiny_config variant, study
    "tiny") run in ``workdir``; ``report``: the report stage ran too."""
    spec = config["studies"]["tiny"]
    n_trials = spec["sweep"]["n_trials"]
    modes, seeds = spec["refine"]["modes"], [str(s) for s in spec["refine"]["seeds"]]

    tracker = Tracker.for_results(workdir / "results")
    runs = find_runs(tracker, "medflow/tiny")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_stage: dict[str, list] = {}
    for run in runs:
        for tag in ("stage", "study", "dataset_hash", "config_hash", "git_commit"):
            assert run.data.tags.get(tag), (run.info.run_name, tag)
        by_stage.setdefault(run.data.tags["stage"], []).append(run)
    assert len(by_stage["pretrain"]) == len(spec["sweep"]["space"]["activations"])
    (parent,) = by_stage["sweep"]
    trials = by_stage["trial"]
    assert len(trials) >= n_trials
    assert all(t.data.tags[PARENT_RUN_TAG] == parent.info.run_id for t in trials)
    finished = [t for t in trials if t.data.tags.get("optuna_state") in FINISHED]
    assert sorted(int(t.data.tags["trial_number"]) for t in finished) == sorted(
        t.number for t in study.trials if t.state.name in FINISHED
    )
    assert len(finished) == n_trials

    refine = by_stage["refine"]
    assert len(refine) == len(modes) * len(seeds)
    assert {(r.data.tags["mode"], r.data.tags["seed"]) for r in refine} == {
        (m, s) for m in modes for s in seeds
    }
    full = validate_config(config)["studies"]["tiny"]
    pretrain = full["pretrain"]
    expected = _precision(workdir, full, pretrain["dataset"], pretrain["batch_size"])
    for run in by_stage["pretrain"]:
        assert run.data.tags["precision"] == expected, run.info.run_name
    expected = _precision(workdir, full, full["target"], full["train"]["batch_size"])
    for run in refine:
        assert run.data.tags["precision"] == expected, run.info.run_name
    pretrain_ids = {r.info.run_id for r in by_stage["pretrain"]}
    for run in refine:
        assert "test_accuracy" in run.data.metrics and "test_auc_ci_low" in run.data.metrics
        if run.data.tags["mode"] != "scratch":
            assert run.data.tags["parent_model_run_id"] in pretrain_ids
    assert len(by_stage["evaluate"]) == 1

    evaluated = workdir / "results/evaluate/tiny"
    metrics = json.loads((evaluated / "metrics.json").read_text())
    gain = ["transfer_gain"] if {"finetune", "scratch"} <= set(modes) else []
    assert set(metrics["summary"]) >= {*modes, *gain}
    assert all(metrics["summary"][m]["accuracy"]["n"] == len(seeds) for m in modes)
    best = json.loads((workdir / "results/sweeps/tiny/best_params.json").read_text())
    assert set(best["params"]) >= {"optimizer", "activation", "lr", "freeze"}
    trials_csv = pd.read_csv(workdir / "results/sweeps/tiny/trials.csv")
    assert trials_csv["state"].isin(FINISHED).sum() == n_trials
    _assert_clinical_metrics(metrics, modes, len(seeds))
    for name in ("confusion.png", "roc.png", "reliability.png"):
        assert (evaluated / name).stat().st_size > 1000
    card = (evaluated / "model_card.md").read_text()
    for part in ("## Data source and splits", "## Known limitations", "class_weight = none"):
        assert part in card, part
    (evaluate_run,) = by_stage["evaluate"]
    assert f"{modes[0]}.test_ece_ci_high" in evaluate_run.data.metrics
    if gain:
        assert "finetune_vs_scratch.delong_p" in evaluate_run.data.metrics
    predictions = sorted(p.name for p in (evaluated / "predictions").glob("*.csv"))
    assert predictions == sorted(f"{m}_seed{s}.csv" for m in modes for s in seeds)
    if report:
        # analyze found the sweep's Optuna study (named after the sweep's inputs)
        importances = json.loads((evaluated / "analysis/importances.json").read_text())
        assert "no Optuna study" not in importances.get("note", ""), importances
        assert_report_complete(workdir / "results/report/index.html", ["tiny"], classics=False)


def _assert_clinical_metrics(metrics: dict, modes: list[str], n_seeds: int) -> None:
    """Intervals over test examples and seeds, operating point, calibration, comparisons."""
    assert "hierarchical" in metrics["interval_method"]["method"]
    for mode in modes:
        summary = metrics["summary"][mode]
        for name in ("accuracy", "auc", "brier", "ece"):
            stats = summary[name]
            assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"], (mode, name, stats)
        # the interval carries test-set sampling: never narrower than the seeds-only one
        acc = summary["accuracy"]
        assert acc["ci_high"] - acc["ci_low"] > 0
        op = summary["operating_point"]
        assert op["chosen_on"] == "validation" and op["per_class"]
        assert {"sensitivity", "specificity", "ppv", "npv"} <= set(op["per_class"][0])
        assert len(op["thresholds_by_seed"]) == n_seeds
    pairs = [("finetune", "scratch"), ("finetune", "linear_probe")]
    expected = {f"{a}_vs_{b}" for a, b in pairs if {a, b} <= set(modes)}
    comparisons = metrics["comparisons"]
    assert set(comparisons) == expected
    if "finetune_vs_scratch" in expected:
        gain = metrics["summary"]["transfer_gain"]["auc"]
        assert gain["ci_low"] <= gain["mean"] <= gain["ci_high"]
    for entry in comparisons.values():
        assert len(entry["delong"]["per_seed"]) == n_seeds
        assert 0 <= entry["delong"]["p_value"] <= 1
