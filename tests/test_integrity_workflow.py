"""Integrity through the real entry points: unsafe names, failed re-prepares, stale sweeps,
torn journals, bounded CIs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend

from medflow.hpo.journal import TornTailSafeJournal
from medflow.stats.intervals import aggregate_over_seeds
from medflow.stats.summary import summarize_modes
from tests.conftest import run_cli, run_snakemake
from tests.test_pipeline import journal_storage, sweep_only_config


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


def _sweep(tmp_path: Path, config: dict) -> dict:
    """Run prepare -> sweep of the tiny study through snakemake; return best_params.json."""
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "results/sweeps/tiny/best_params.json"
    result = run_snakemake("--configfile", str(path), "--cores", "2", target, workdir=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((tmp_path / target).read_text())


def _studies(tmp_path: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = journal_storage(tmp_path / "results/sweeps/tiny/optuna.journal")
    return {
        name: optuna.load_study(study_name=name, storage=storage).trials
        for name in optuna.get_all_study_names(storage)
    }


@pytest.mark.slow
def test_a_changed_space_or_target_starts_a_new_study_and_a_torn_journal_is_repaired(tmp_path):
    config = sweep_only_config(workers=1, n_trials=2, trial_epochs=2, pruner="none")
    first = _sweep(tmp_path, config)
    assert first["params"]["optimizer"] in ("sgd", "adam")

    # A new space: the old trials (sgd/adam, lr <= 0.05) must not be reused.
    space = config["studies"]["tiny"]["sweep"]["space"]
    space.update(optimizers=["rmsprop"], lr=[0.3, 0.5])
    second = _sweep(tmp_path, config)
    assert second["params"]["optimizer"] == "rmsprop" and 0.3 <= second["params"]["lr"] <= 0.5
    assert sorted(len(trials) for trials in _studies(tmp_path).values()) == [2, 2]

    # A torn last record (a writer killed mid-append), then new target data: the rerun
    # cuts the torn tail instead of gluing records onto it, and keeps every complete trial.
    journal = tmp_path / "results/sweeps/tiny/optuna.journal"
    journal.write_bytes(journal.read_bytes()[:-40])
    config["datasets"]["digits"]["train_per_class"] = 8
    third = _sweep(tmp_path, config)
    assert third["params"]["optimizer"] == "rmsprop"
    studies = list(_studies(tmp_path).values())  # in creation order
    assert len(studies) == 3
    assert [t.state.is_finished() for t in studies[0]] == [True, True]
    assert [t.state.is_finished() for t in studies[2]] == [True, True]

    # The tracking store deleted: every recorded run id would point at nothing, while the
    # outputs look complete to Snakemake; it must refuse to start, naming both files.
    (tmp_path / "results/mlflow.db").unlink()
    path = tmp_path / "sweep.yaml"
    refused = run_snakemake("--configfile", str(path), "--cores", "2", workdir=tmp_path)
    assert refused.returncode != 0
    assert re.search(
        r"the tracking store \S*results/mlflow\.db is missing, but \S*results/\S+run_id\.txt "
        r"holds the id of a run recorded in it",
        refused.stdout + refused.stderr,
    )


@pytest.mark.parametrize("safe", [True, False], ids=["medflow-journal", "plain-optuna"])
def test_an_append_after_a_torn_record_keeps_the_journal_readable(tmp_path, safe, caplog):
    path = str(tmp_path / "optuna.journal")

    def storage():
        backend = TornTailSafeJournal(path) if safe else JournalFileBackend(path)
        return optuna.storages.JournalStorage(backend)

    first = optuna.create_study(study_name="a", storage=storage())
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    Path(path).write_bytes(Path(path).read_bytes()[:-40])  # the writer died mid-record
    if not safe:  # what medflow guards against: the glued line breaks every later use
        with pytest.raises((ValueError, AssertionError)):
            optuna.create_study(study_name="b", storage=storage())  # the next append
            optuna.load_study(study_name="a", storage=storage())
        return
    optuna.create_study(study_name="b", storage=storage())  # the next append
    assert "dropped an incomplete last record" in caplog.text
    kept = optuna.load_study(study_name="a", storage=storage()).trials
    assert [t.state.is_finished() for t in kept[:2]] == [True, True]
    assert optuna.get_all_study_names(storage()) == ["a", "b"]


def test_runs_a_killed_job_left_running_are_ended_killed_when_it_runs_again(tracker, tmp_path):
    import dataclasses
    import subprocess
    import sys

    from medflow.runtime.liveness import ProcessIdentity
    from medflow.tracking.client import find_runs
    from medflow.tracking.orphans import owner_tags
    from medflow.tracking.training import tracked_training
    from tests.test_train import blobs_data, run_config

    checkpoint = tmp_path / "refine" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    key = str(checkpoint.resolve())
    me = ProcessIdentity.current()
    # A process that has exited: what SIGKILL leaves behind.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    killed = tracker.start_run(
        "e", "killed attempt", owner_tags(key, dataclasses.replace(me, pid=dead.pid, started=""))
    )
    alive = tracker.start_run("e", "live attempt", owner_tags(key, me))  # this very process
    other = tracker.start_run("e", "other run", owner_tags(key + ".other", me))

    tracked_training(
        run_config(epochs=2),
        blobs_data(),
        tracker,
        experiment="e",
        run_name="rerun",
        tags={},
        checkpoint=checkpoint,
        log_model=False,
    )
    status = {r.info.run_id: r.info.status for r in find_runs(tracker, "e")}
    assert status[killed] == "KILLED"
    assert status[alive] == status[other] == "RUNNING"
    killed_run = tracker.get_run(killed)
    assert "died (killed)" in killed_run.data.tags["failure_reason"]
    (rerun,) = [r for r in find_runs(tracker, "e") if r.info.run_name == "rerun"]
    assert rerun.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"studies": {"s": {"target": "d", "train": {"device": "tpu:7"}}}}, "train.device"),
        ({"tracking": {"uri": "ftp://host/store"}}, "tracking.uri"),
    ],
    ids=["device", "tracking-scheme"],
)
def test_values_no_job_could_use_fail_at_validation_naming_the_key(tmp_path, section, expected):
    config = {"datasets": {"d": {"source": "sklearn_digits"}}, "classics": {"enabled": False}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**config, **section}))
    result = run_cli("validate", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{expected}: " in result.stderr and "is not allowed" in result.stderr
    # A known device and a server URI with a driver pass.
    ok = {
        "studies": {"s": {"target": "d", "pretrain": None, "train": {"device": "cuda:1"}}},
        "tracking": {"uri": "postgresql+psycopg2://user@host/db"},
    }
    ok["studies"]["s"]["refine"] = {"modes": ["scratch"]}
    path.write_text(yaml.safe_dump({**config, **ok}))
    assert run_cli("validate", "--config", str(path), cwd=tmp_path).returncode == 0
