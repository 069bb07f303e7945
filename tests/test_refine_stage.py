"""The refine stage: several seeds per job, one MLflow run each, finished seeds reused."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from medflow.config.schema import validate_config
from medflow.config.types import MedflowConfig
from medflow.errors import MedflowError
from medflow.layout import Layout
from medflow.stages import evaluate, refine
from medflow.stages.context import StageContext
from medflow.stages.prepare import prepare_dataset
from medflow.tracking.client import Tracker, find_runs
from tests.conftest import run_cli, run_snakemake, tiny_mlp_study_config

CONFIG = tiny_mlp_study_config(
    train={"epochs": 3, "batch_size": 32, "patience": 0},
    sweep={"space": {"optimizers": ["adam"], "activations": ["relu"]}},
    refine={"modes": ["scratch"], "seeds": [0, 1, 2], "seeds_per_job": 2},
)


def _setup(tmp_path: Path) -> tuple[MedflowConfig, Layout]:
    cfg = MedflowConfig.from_validated(validate_config(CONFIG), "test")
    layout = Layout(tmp_path / "results")
    prepare_dataset(cfg.dataset("digits"), layout.prepared("digits"))
    best = {"params": {"optimizer": "adam", "activation": "relu", "lr": 0.01}, "number": 3}
    layout.sweep("tiny").mkdir(parents=True)
    layout.sweep_best("tiny").write_text(json.dumps(best))
    return cfg, layout


def _ctx(cfg: MedflowConfig, layout: Layout) -> StageContext:
    return StageContext(layout=layout, tracking=cfg.tracking)


def _refine(cfg: MedflowConfig, layout: Layout, seeds: tuple[int, ...]) -> dict:
    return refine.run(_ctx(cfg, layout), cfg.study("tiny"), "scratch", seeds)


def _runs(layout: Layout) -> dict[str, str]:
    tracker = Tracker.for_results(layout.results)
    return {r.info.run_id: r.data.tags["seed"] for r in find_runs(tracker, "medflow/tiny")}


def test_seed_batches_follow_seeds_per_job():
    study = MedflowConfig.from_validated(validate_config(CONFIG), "test").study("tiny")
    assert study.seed_batches == ((0, 1), (2,))
    assert dataclasses.replace(study, seeds_per_job=None).seed_batches == ((0, 1, 2),)
    assert dataclasses.replace(study, seeds_per_job=1).seed_batches == ((0,), (1,), (2,))


def test_one_job_trains_its_seeds_and_reuses_finished_ones(tmp_path):
    cfg, layout = _setup(tmp_path)
    record = _refine(cfg, layout, (0, 1))
    assert [r["seed"] for r in record["runs"]] == [0, 1]
    assert json.loads(layout.refine_batch("tiny", "scratch", "0-1").read_text()) == record
    first = _runs(layout)
    assert sorted(first.values()) == ["0", "1"]
    for run in record["runs"]:
        folder = layout.refine("tiny", "scratch", run["seed"])
        assert (folder / "run_id.txt").read_text() == run["run_id"]
        assert (folder / "model.pt").exists()
        assert json.loads((folder / "result.json").read_text())["seed"] == run["seed"]

    # Same inputs: both seeds are reused, no new MLflow run.
    assert _refine(cfg, layout, (0, 1)) == record
    assert _runs(layout) == first

    # Snakemake deletes a job's declared outputs before it re-runs it: still reused, rewritten.
    for seed in (0, 1):
        layout.refine_result("tiny", "scratch", seed).unlink()
        layout.refine_run_id("tiny", "scratch", seed).unlink()
    assert _refine(cfg, layout, (0, 1)) == record
    assert _runs(layout) == first
    assert layout.refine_run_id("tiny", "scratch", 1).read_text() == record["runs"][1]["run_id"]

    # A job interrupted during seed 1 (its resume record never written): only it trains again.
    Layout.resume_file(layout.refine("tiny", "scratch", 1)).unlink()
    again = _refine(cfg, layout, (0, 1))
    assert again["runs"][0] == record["runs"][0]
    assert again["runs"][1]["run_id"] not in first
    assert sorted(_runs(layout).values()) == ["0", "1", "1"]

    # Other inputs (the sweep picked another learning rate): both seeds train anew.
    before = set(_runs(layout))
    best = layout.sweep_best("tiny")
    best.write_text(best.read_text().replace("0.01", "0.02"))
    changed = _refine(cfg, layout, (0, 1))
    assert not {r["run_id"] for r in changed["runs"]} & before
    assert len(_runs(layout)) == 5


def test_refine_command_names_seeds_outside_the_study(tmp_path, repo):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(CONFIG))
    done = run_cli(
        "refine", "--study", "tiny", "--mode", "scratch", "--seeds", "0", "7",
        "--config", str(config), "--results", str(tmp_path / "results"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--seeds 0 7" in done.stderr and "refine.seeds [0, 1, 2]" in done.stderr


def test_workflow_plans_one_refine_job_per_mode_and_batch_of_seeds(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(CONFIG))  # seeds [0, 1, 2], seeds_per_job 2
    done = run_snakemake("-n", "--configfile", str(config), workdir=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    planned = re.findall(r"rule (refine_seeds_[\d_]+):", done.stdout)
    assert sorted(planned) == ["refine_seeds_0_1", "refine_seeds_2"], done.stdout[-3000:]
    assert "wildcards: study=tiny, mode=scratch" in done.stdout
    assert "results/refine/tiny/scratch/seeds-0-1.json" in done.stdout
    assert "results/refine/tiny/scratch/seeds-2.json" in done.stdout
    # Each seed's files are the job's declared outputs, so deleting them re-plans the job.
    for seed in (0, 1, 2):
        assert f"results/refine/tiny/scratch/seed{seed}/result.json" in done.stdout
        assert f"results/refine/tiny/scratch/seed{seed}/run_id.txt" in done.stdout


def test_evaluate_names_a_missing_seed_result(tmp_path):
    cfg, layout = _setup(tmp_path)
    _refine(cfg, layout, (0, 1))  # seed 2's job (seeds-2) never ran
    with pytest.raises(MedflowError) as error:
        evaluate.run(_ctx(cfg, layout), cfg.study("tiny"))
    message = str(error.value)
    assert str(layout.refine_result("tiny", "scratch", 2)) in message
    assert "seed 2" in message
    assert not layout.evaluate_metrics("tiny").exists()
