"""A tiny study's runs, logged by medflow's own tracking code into a real SQLite store, read
back through a real ``mlflow server``: over its REST API, and rendered by its web UI in
headless Chromium (Debian's /usr/bin/chromium; skips with the reason where it is missing).

Set MEDFLOW_SCREENSHOT_DIR to keep a copy of the UI screenshot for a human to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medflow.ml.loop import RunConfig, TrainConfig
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.tracking.client import PARENT_RUN_TAG, Tracker
from medflow.tracking.provenance import standard_tags
from medflow.tracking.runs import tracked_run
from medflow.tracking.training import tracked_training
from tests.conftest import sqlite_uri
from tests.system.mlflow_server import MlflowServer, mlflow_server
from tests.test_train import blobs_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root on a machine whose only network is a package mirror: no sandbox, and none
# of Chromium's own outbound connections (they are refused and slow everything down).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPERIMENT = "medflow/tiny"
SWEEP_RUN = "sweep tiny"
OPTIMIZERS = ("sgd", "adam", "rmsprop")  # one trial each
EPOCHS = 3
UI_TIMEOUT_MS = 90_000


@dataclass
class TinyStudy:
    server: MlflowServer
    parent_run_id: str
    trials: dict[str, dict[str, Any]]  # run name -> run_id, best_val_accuracy


def _log_tiny_study(tracker: Tracker) -> tuple[str, dict[str, dict[str, Any]]]:
    """A sweep parent run and one tracked training run per optimizer nested under it, as the
    sweep stage logs them (names, tags, per-epoch metrics, best_* summary, curve figure)."""
    data = blobs_data()
    data.dataset_hash = "tinyhash"
    trials: dict[str, dict[str, Any]] = {}
    sweep_tags = standard_tags("sweep", "tiny", data.dataset_hash, "tinycfg")
    with tracked_run(tracker, EXPERIMENT, SWEEP_RUN, sweep_tags) as parent:
        for number, optimizer in enumerate(OPTIMIZERS):
            run = RunConfig(
                model=ModelConfig.from_schema(arch="mlp", hidden_sizes=(8,)),
                optim=OptimConfig.from_schema(name=optimizer, lr=0.05, schedule="constant"),
                train=TrainConfig.from_schema(
                    epochs=EPOCHS, batch_size=32, patience=10, monitor="val_accuracy", seed=0
                ),
            )
            tags = standard_tags(
                "trial",
                "tiny",
                data.dataset_hash,
                "tinycfg",
                trial_number=number,
                optuna_state="COMPLETE",
            )
            name = f"trial {number}"
            result, run_id = tracked_training(
                run,
                data,
                tracker,
                experiment=EXPERIMENT,
                run_name=name,
                tags=tags,
                parent_run_id=parent,
                log_model=False,
            )
            trials[name] = {"run_id": run_id, "best_val_accuracy": result.best_value}
    return parent, trials


@pytest.fixture(scope="module")
def tiny_study(migrated_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyStudy]:
    folder = tmp_path_factory.mktemp("mlflow-ui")
    db = folder / "mlflow.db"
    shutil.copyfile(migrated_db, db)
    started = time.perf_counter()
    parent, trials = _log_tiny_study(Tracker(sqlite_uri(db), folder / "mlartifacts"))
    print(f"\ntiny study logged in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    with mlflow_server(sqlite_uri(db), folder / "served-artifacts", workers=1) as server:
        print(f"mlflow server healthy in {time.perf_counter() - started:.1f}s at {server.url}")
        yield TinyStudy(server, parent, trials)


def _api(server: MlflowServer, path: str, body: dict | None = None, **query: str) -> dict:
    """One REST call: GET with ``query``, or POST of ``body`` as JSON."""
    url = f"{server.url}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(url)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _experiment_id(server: MlflowServer) -> str:
    found = _api(server, "experiments/get-by-name", experiment_name=EXPERIMENT)
    return found["experiment"]["experiment_id"]


def test_rest_api_serves_the_logged_runs_and_metrics(tiny_study):
    server = tiny_study.server
    experiment_id = _experiment_id(server)
    found = _api(server, "runs/search", {"experiment_ids": [experiment_id], "max_results": 100})
    runs = {r["info"]["run_name"]: r for r in found["runs"]}
    assert set(runs) == {SWEEP_RUN, *tiny_study.trials}
    assert "next_page_token" not in found
    assert {r["info"]["status"] for r in runs.values()} == {"FINISHED"}
    assert runs[SWEEP_RUN]["info"]["run_id"] == tiny_study.parent_run_id

    for name, logged in tiny_study.trials.items():
        run = runs[name]
        assert run["info"]["run_id"] == logged["run_id"]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags[PARENT_RUN_TAG] == tiny_study.parent_run_id
        assert tags["stage"] == "trial" and tags["study"] == "tiny"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["best_val_accuracy"] == pytest.approx(logged["best_val_accuracy"])
        history = _api(
            server, "metrics/get-history", run_id=logged["run_id"], metric_key="val_accuracy"
        )
        assert sorted(m["step"] for m in history["metrics"]) == list(range(1, EPOCHS + 1))

    children = _api(
        server,
        "runs/search",
        {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`{PARENT_RUN_TAG}` = '{tiny_study.parent_run_id}'",
        },
    )
    assert len(children["runs"]) == len(tiny_study.trials)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as playwright:
        # launch() gives the browser a fresh, empty profile (--user-data-dir) of its own.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def _show_nested_runs_and_metric_columns(page: Any) -> None:
    """Expand the sweep's child runs and add the metric columns: MLflow 3 shows neither."""
    run_name = page.get_by_role("link", name=SWEEP_RUN, exact=True)
    run_name.wait_for()
    # The expander is the button in the run-name cell of the parent's row.
    page.get_by_role("row").filter(has=run_name).get_by_role("button").first.click()
    page.get_by_role("button", name="Columns").click()
    for metric in ("best_val_accuracy", "val_loss"):
        page.get_by_role("dialog").get_by_text(metric, exact=True).click()
    page.keyboard.press("Escape")
    # The assistant side panel only hides part of the table in the screenshot.
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() == 1:
        close.click()


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} not installed (`make system-packages` installs it as root)",
)
def test_ui_renders_the_tiny_study_runs(tiny_study, browser_page, tmp_path):
    page = browser_page
    server = tiny_study.server
    experiment_id = _experiment_id(server)
    started = time.perf_counter()
    # workflowType: without it MLflow 3 opens the GenAI overview of an experiment.
    page.goto(
        f"{server.url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning",
        wait_until="domcontentloaded",
    )
    _show_nested_runs_and_metric_columns(page)
    for name in tiny_study.trials:
        page.get_by_role("link", name=name, exact=True).wait_for()
    for column in ("best_val_accuracy", "val_loss"):
        page.get_by_role("columnheader", name=column).first.wait_for()
    page.get_by_text(f"{len(tiny_study.trials) + 1} matching runs").wait_for()
    print(f"UI rendered the runs in {time.perf_counter() - started:.1f}s")

    screenshot = tmp_path / "mlflow-ui-tiny.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if target := os.environ.get("MEDFLOW_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(screenshot, Path(target) / screenshot.name)

    text = page.inner_text("body")
    for name in (SWEEP_RUN, *tiny_study.trials):
        assert name in text
    # The metric cells show what was logged (the parent has none: "-").
    cells = page.locator('[role="gridcell"][col-id*="best_val_accuracy"]').all_inner_texts()
    shown = sorted(float(c) for c in cells if c.strip() not in {"", "-"})
    logged = sorted(t["best_val_accuracy"] for t in tiny_study.trials.values())
    assert shown == pytest.approx(logged, rel=1e-3), cells
