"""Shared storage for many machines: Optuna on PostgreSQL, MLflow through an ``mlflow server``
backed by the same PostgreSQL, driven by the real workflow with parallel sweep workers.

Skips (with the reason) where no PostgreSQL binaries can be run; see tests/system/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs
from medflow.tracking.models import load_torch_model, log_torch_model
from tests.conftest import run_snakemake
from tests.system.mlflow_server import MlflowServer, mlflow_server
from tests.system.postgres_server import PostgresServer, postgres_server
from tests.test_pipeline import FINISHED_STATES, sweep_only_config, write_config

pytestmark = pytest.mark.slow

N_TRIALS = 6
WORKERS = 3


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PostgresServer, MlflowServer]]:
    started = time.perf_counter()
    folder = tmp_path_factory.mktemp("mlflow-server")
    with (
        postgres_server(("optuna", "mlflow")) as pg,
        mlflow_server(pg.url("mlflow"), folder / "artifacts", workers=1) as server,
    ):
        print(f"\nPostgreSQL + mlflow server up in {time.perf_counter() - started:.1f}s")
        yield pg, server


@pytest.fixture
def no_global_tracking(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $MLFLOW_TRACKING_URI, and a working directory where a fallback store would show."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.timeout(300)
def test_parallel_sweep_on_postgres_and_a_tracking_server(servers, tmp_path, no_global_tracking):
    pg, server = servers
    config = sweep_only_config(WORKERS, N_TRIALS, trial_epochs=2, pruner="median")
    config["tracking"] = {"uri": server.url}
    config["studies"]["tiny"]["sweep"]["storage"] = pg.url("optuna")
    path = write_config(tmp_path, config)

    started = time.perf_counter()
    result = run_snakemake(
        "results/sweeps/tiny/trials.csv",
        "--cores",
        str(WORKERS),
        "--configfile",
        str(path),
        workdir=tmp_path,
        timeout=240,
    )
    elapsed = time.perf_counter() - started
    print(f"sweep with {WORKERS} workers on PostgreSQL + mlflow server: {elapsed:.1f}s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    (name,) = [n for n in optuna.get_all_study_names(pg.url("optuna")) if n.startswith("tiny-")]
    study = optuna.load_study(study_name=name, storage=pg.url("optuna"))
    finished = [t for t in study.trials if t.state in FINISHED_STATES]
    assert len(finished) == N_TRIALS
    assert not (tmp_path / "results/sweeps/tiny/optuna.journal").exists()

    tracker = Tracker(server.url)
    runs = find_runs(tracker, "medflow/tiny")
    (parent,) = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("stage") == "trial"]
    assert all(r.data.tags[PARENT_RUN_TAG] == parent.info.run_id for r in trials)
    counted = [r for r in trials if r.data.tags.get("optuna_state") in ("COMPLETE", "PRUNED")]
    assert len(counted) == N_TRIALS
    assert sorted(int(r.data.tags["trial_number"]) for r in counted) == sorted(
        t.number for t in finished
    )
    assert len({r.data.tags["worker"] for r in trials}) >= 2
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.data.metrics for r in counted)  # per-epoch metrics went through the server
    # sweep_best uploaded its files through the server's artifact proxy.
    uploaded = {f.path for f in tracker.client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best_params.json"} <= uploaded
    assert list(server.artifacts_dir.rglob("trials.csv"))

    # Nothing fell back to an embedded store.
    for stray in ("results/mlflow.db", "results/mlartifacts", "mlflow.db", "mlruns"):
        assert not (tmp_path / stray).exists(), stray


@pytest.mark.timeout(180)
def test_a_model_logged_through_the_server_loads_back(servers, no_global_tracking):
    import torch

    _, server = servers
    tracker = Tracker(server.url)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    example = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    run_id = tracker.start_run("medflow/models", "model round trip", {"stage": "test"})
    log_torch_model(tracker, run_id, model, example)
    tracker.end_run(run_id)

    batch = torch.rand(5, 4)
    loaded = load_torch_model(tracker, run_id)
    torch.testing.assert_close(loaded(batch), model(batch).detach())
    assert list(server.artifacts_dir.rglob("MLmodel"))
    assert not (no_global_tracking / "mlflow.db").exists()
