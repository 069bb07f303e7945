"""The whole DAG with snakemake on tiny configs: nesting, counts, tags, test metrics,
four concurrent sweep workers, and resume after the workflow is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from medflow.layout import Layout
from medflow.tracking.client import Tracker, find_runs
from tests.conftest import BIN, REPO, path_without_venv, run_snakemake
from tests.pipeline_checks import assert_tiny_dag_results
from tests.report_checks import assert_report_opens_no_test_split
from tests.snakemake_report_checks import assert_report_zip_has_every_marked_output

pytestmark = pytest.mark.slow

UI_URL = "http://127.0.0.1:5000"
FINISHED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def tiny_config(
    workers: int = 2, n_trials: int = 4, trial_epochs: int = 3, pruner: str = "median"
) -> dict:
    """Digits target, CNN pretrained on a few hundred synthetic images, all three modes."""
    return {
        "datasets": {
            "digits": {
                "source": "sklearn_digits",
                "train_per_class": 6,
                "split": {"val_fraction": 0.2, "test_fraction": 0.3},
            },
            "shapes": {
                "source": "synthetic",
                "options": {"n_images": 600, "image_size": 8},
                "split": {"val_fraction": 0.2, "test_fraction": 0.1},
            },
        },
        "classics": {"enabled": False},
        "tracking": {"ui_url": UI_URL},
        "studies": {
            "tiny": {
                "target": "digits",
                "pretrain": {"dataset": "shapes", "epochs": 2, "batch_size": 64},
                "model": {"arch": "cnn", "width": 4, "depth": 2},
                "train": {"epochs": 3, "batch_size": 32, "monitor": "val_accuracy", "patience": 0},
                "sweep": {
                    "n_trials": n_trials,
                    "workers": workers,
                    "epochs": trial_epochs,
                    "pruner": pruner,
                    "space": {
                        "optimizers": ["sgd", "adam"],
                        "activations": ["relu", "tanh"],
                        "lr": [0.001, 0.05],
                        "freeze": ["finetune", "linear_probe"],
                    },
                },
                "refine": {"modes": ["finetune", "linear_probe", "scratch"], "seeds": [0, 1]},
                "evaluate": {"bootstrap": 200},
            }
        },
    }


def sweep_only_config(workers: int, n_trials: int, trial_epochs: int, pruner: str) -> dict:
    """No pretraining: the sweep tests need only prepare -> sweep, the fewest jobs."""
    config = tiny_config(workers, n_trials, trial_epochs, pruner)
    del config["datasets"]["shapes"]
    study = config["studies"]["tiny"]
    study["pretrain"] = None
    study["model"] = {"arch": "mlp", "hidden_sizes": [16]}
    study["sweep"]["space"]["freeze"] = None
    study["refine"]["modes"] = ["scratch"]
    return config


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def journal_storage(journal: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))


def load_study(tmp_path: Path) -> optuna.Study:
    storage = journal_storage(tmp_path / "results/sweeps/tiny/optuna.journal")
    # The Optuna study is named after the medflow study plus a digest of its inputs.
    (name,) = [n for n in optuna.get_all_study_names(storage) if n.startswith("tiny-")]
    return optuna.load_study(study_name=name, storage=storage)


def test_whole_dag_logs_nested_runs_tags_and_test_metrics_and_reports(tmp_path):
    config = write_config(tmp_path, tiny_config())
    started = time.perf_counter()
    result = run_snakemake("--cores", "2", "--configfile", str(config), workdir=tmp_path)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"tiny DAG wall time: {elapsed:.1f}s")
    assert_tiny_dag_results(tmp_path, tiny_config(), load_study(tmp_path))
    report = (tmp_path / "results/report/index.html").read_text()
    assert f'href="{UI_URL}/#/experiments/' in report  # run ids link into the UI
    assert_report_zip_has_every_marked_output(tmp_path, config)
    assert_report_opens_no_test_split(tmp_path / "results", config)  # the report only renders
    assert_delete_all_output_removes_every_declared_file(tmp_path, config)


def assert_delete_all_output_removes_every_declared_file(tmp_path: Path, config: Path) -> None:
    """Every file a job writes for the DAG is declared: each refine seed's records too."""
    layout = Layout(tmp_path / "results")
    seed_files = [
        path
        for mode in ("finetune", "linear_probe", "scratch")
        for seed in (0, 1)
        for path in (
            layout.refine_result("tiny", mode, seed),
            layout.refine_run_id("tiny", mode, seed),
        )
    ]
    assert all(path.exists() for path in seed_files)
    deleted = run_snakemake(
        "--delete-all-output", "--configfile", str(config), workdir=tmp_path, timeout=120
    )
    assert deleted.returncode == 0, deleted.stdout[-3000:] + deleted.stderr[-3000:]
    assert not [path for path in seed_files if path.exists()]
    assert not layout.evaluate_metrics("tiny").exists()
    assert not layout.evaluate_predictions("tiny").exists()
    assert not layout.pretrain_model("tiny", "relu").exists()


def test_four_workers_share_one_study_and_store_without_losing_trials(tmp_path):
    config = write_config(tmp_path, sweep_only_config(4, 12, trial_epochs=2, pruner="median"))
    result = run_snakemake(
        "results/sweeps/tiny/trials.csv",
        "--cores",
        "4",
        "--configfile",
        str(config),
        workdir=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    study = load_study(tmp_path)
    finished = [t for t in study.trials if t.state in FINISHED_STATES]
    assert len(finished) == 12
    assert sorted(t.number for t in finished) == sorted({t.number for t in finished})
    tracker = Tracker.for_results(tmp_path / "results")
    trials = [r for r in find_runs(tracker, "medflow/tiny") if r.data.tags.get("stage") == "trial"]
    counted = [r for r in trials if r.data.tags.get("optuna_state") in ("COMPLETE", "PRUNED")]
    assert len(counted) == 12
    assert len({r.data.tags["worker"] for r in trials}) >= 2
    assert not [r for r in trials if r.info.status == "RUNNING"]


def _start_workflow(tmp_path: Path, config: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": path_without_venv()}
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "results/sweeps/tiny/trials.csv",
        "--cores",
        "2",
        "--configfile",
        str(config),
    ]
    log = (tmp_path / "first_run.log").open("w")
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_until_mid_trial(tmp_path: Path, timeout: float = 240) -> None:
    """Until at least one trial has finished and another is running: the moment to kill."""
    journal = tmp_path / "results/sweeps/tiny/optuna.journal"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = optuna.get_all_study_names(journal_storage(journal)) if journal.exists() else []
        if names:  # the journal file appears a moment before its study's first record
            states = [t.state for t in load_study(tmp_path).trials]
            running = states.count(optuna.trial.TrialState.RUNNING)
            if running and sum(s in FINISHED_STATES for s in states) >= 1:
                return
        time.sleep(0.3)
    raise AssertionError(f"no finished and running trials within {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path, sig):
    config = write_config(tmp_path, sweep_only_config(2, 6, trial_epochs=150, pruner="none"))
    started = time.perf_counter()
    process = _start_workflow(tmp_path, config)
    try:
        _wait_until_mid_trial(tmp_path)
        os.killpg(process.pid, sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    before = {t.number: t.value for t in load_study(tmp_path).trials if t.state in FINISHED_STATES}
    assert before and len(before) < 6

    print(f"killed after {time.perf_counter() - started:.1f}s")
    unlock = run_snakemake("--unlock", "--configfile", str(config), workdir=tmp_path, timeout=120)
    assert unlock.returncode == 0, unlock.stderr
    again = run_snakemake(
        "results/sweeps/tiny/trials.csv",
        "--cores",
        "2",
        "--rerun-incomplete",
        "--configfile",
        str(config),
        workdir=tmp_path,
    )
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    print(f"resumed and finished after {time.perf_counter() - started:.1f}s")
    study = load_study(tmp_path)
    after = {t.number: t.value for t in study.trials if t.state in FINISHED_STATES}
    assert len(after) == 6
    assert all(after[n] == v for n, v in before.items())  # finished trials were not redone
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed, "the interrupted trial should be marked failed"
    retried = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert {t.user_attrs["retry_of"] for t in retried} & {t.number for t in failed}
    tracker = Tracker.for_results(tmp_path / "results")
    runs = find_runs(tracker, "medflow/tiny")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r for r in runs if r.info.status == "KILLED"]
