"""The HTML report: it only renders what earlier jobs wrote, never opening test data.

Fast tests build a small results folder in-process (two prepared embedded datasets and the
analyze stage's files). The full-content tests need a results folder of a complete run:

    MEDFLOW_REPORT_RESULTS=/path/to/results .venv/bin/pytest tests/test_report.py

That folder is only read; the report is written to a linked copy under pytest's tmp_path.
The whole-DAG test in test_pipeline checks the report of a real tiny run the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medflow.config.load import load_config
from medflow.config.types import MedflowConfig
from medflow.data.format import PreparedDataset
from medflow.layout import Layout
from medflow.stages import analyze, prepare, report
from medflow.stages.context import StageContext
from tests.conftest import REPO
from tests.report_checks import (
    assert_report_complete,
    assert_report_opens_no_test_split,
    parse_report,
    recorded_opens,
)

RESULTS = os.environ.get("MEDFLOW_REPORT_RESULTS")
UI_URL = "http://127.0.0.1:5000"
needs_results = pytest.mark.skipif(
    not RESULTS,
    reason="set MEDFLOW_REPORT_RESULTS to a results folder of a complete run to test the report",
)


def small_config() -> dict:
    """A tabular study (logistic baseline on test) and an image study (no model yet)."""
    return {
        "datasets": {
            "cancer": {"source": "sklearn_breast_cancer"},
            "digits": {"source": "sklearn_digits", "train_per_class": 6},
        },
        "classics": {"enabled": False},
        "studies": {
            "tab": {
                "target": "cancer",
                "model": {"arch": "mlp", "hidden_sizes": [8]},
                "refine": {"modes": ["scratch"]},
            },
            "img": {
                "target": "digits",
                "model": {"arch": "cnn", "width": 4, "depth": 1},
                "refine": {"modes": ["scratch"]},
            },
        },
    }


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, MedflowConfig]:
    """results/ with both datasets prepared and each study analyzed (no training)."""
    root = tmp_path_factory.mktemp("small")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(small_config()))
    cfg = load_config(config)
    ctx = StageContext(layout=Layout(root / "results"), tracking=cfg.tracking)
    for dataset in cfg.datasets.values():
        prepare.run(ctx, dataset)
    for study in cfg.studies.values():
        analyze.run(ctx, study)
    return root / "results", config, cfg


def test_report_opens_no_test_split_nor_model(small_run) -> None:
    results, config, _ = small_run
    path = assert_report_opens_no_test_split(results, config)
    assert path == Layout(results).report()
    text = path.read_text(encoding="utf-8")
    # The tabular baseline is shown from the analyze stage's file, not computed.
    assert "logistic regression (sklearn)" in text
    assert "No refine model.pt found for the best-on-validation run." in text


def test_the_recorder_sees_a_test_split_load(small_run) -> None:
    """The check above is real: loading a split is recorded, and counted as forbidden."""
    from tests.report_checks import forbidden_reads

    results, _, _ = small_run
    with recorded_opens() as opened:
        PreparedDataset.open(Layout(results).prepared("cancer")).load("test")
    test_split = str(Layout(results).prepared_split("cancer", "test"))
    assert set(forbidden_reads(opened, results)) == {test_split}  # hashed, then loaded


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-o", os.devnull, "true"], check=False).returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="strace is not available (or not permitted)")
def test_medflow_report_command_opens_no_test_file(small_run, tmp_path: Path) -> None:
    """Every openat of the whole `medflow report` process tree, as the kernel saw it."""
    results, config, _ = small_run
    trace = tmp_path / "trace.txt"
    command = [sys.executable, "-m", "medflow", "report", "--config", str(config)]
    strace = ["strace", "-f", "-e", "trace=open,openat", "-o", str(trace)]
    made = subprocess.run(
        [*strace, *command, "--results", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    lines = trace.read_text().splitlines()
    assert any("meta.json" in line for line in lines)
    opened_test = [line for line in lines if "test.safetensors" in line or '.pt"' in line]
    assert not opened_test


def test_report_escapes_and_cites_the_published_table(small_run, tmp_path: Path) -> None:
    from medflow.render.sections.baselines import published_medmnist

    results, _, cfg = small_run
    ctx = StageContext(layout=Layout(results), tracking=cfg.tracking)
    path = report.run(ctx, cfg, "note: <script>alert(1)</script>")
    text = path.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>" not in text
    assert {"dataset-tab", "baselines-img", "provenance"} <= set(parse_report(path).by_id)
    table = published_medmnist()
    assert "Scientific Data 10, 41 (2023), Table 3" in table["source"]
    assert table["flags"]["pathmnist"]["28"] == {"auc": 0.983, "accuracy": 0.907}
    assert table["flags"]["dermamnist"]["224"] == {"auc": None, "accuracy": None}


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("sqlite:////data/mlflow.db", "/data/mlflow.db"),
        ("sqlite:///:memory:", None),
        ("file:///data/mlruns", "/data/mlruns"),
        ("./mlruns", "./mlruns"),
        ("http://127.0.0.1:5000", None),
        ("databricks", None),
    ],
)
def test_local_store_path(uri: str, local: str | None) -> None:
    from medflow.tracking.queries import local_store_path

    assert local_store_path(uri) == (Path(local) if local else None)


def test_run_reader_never_creates_a_store(tmp_path: Path) -> None:
    from medflow.tracking.queries import RunReader

    db = tmp_path / "results" / "mlflow.db"
    reader = RunReader.open(f"sqlite:///{db}")
    assert reader.client is None and reader.problem == f"no MLflow store at {db}"
    assert reader.run("abc") is None and reader.history("abc", "val_loss") == []
    assert not db.exists()


# --------------------------------------------------------------------------- complete run


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bool]:
    """The report of MEDFLOW_REPORT_RESULTS, written into a copy made of links to it."""
    source = Path(RESULTS)
    results = tmp_path_factory.mktemp("linked") / "results"
    results.mkdir()
    for entry in source.iterdir():
        if entry.name != "report":
            (results / entry.name).symlink_to(entry.resolve())
    config = tmp_path_factory.mktemp("config") / "config.yaml"
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw.setdefault("tracking", {})["ui_url"] = UI_URL
    config.write_text(yaml.safe_dump(raw))
    path = assert_report_opens_no_test_split(results, config)
    return path, list(load_config(config).studies), Layout(source).classics_json().exists()


@needs_results
def test_report_is_complete_and_self_contained(full_report) -> None:
    path, studies, has_classics = full_report
    assert_report_complete(path, studies, classics=has_classics)


@needs_results
def test_mlflow_links_are_plain_links(full_report) -> None:
    path, _, _ = full_report
    text = path.read_text(encoding="utf-8")
    assert f'<a href="{UI_URL}/#/experiments/' in text
    assert f'src="{UI_URL}' not in text


@needs_results
@pytest.mark.parametrize(
    "injected",
    [
        '<img src="http://example.org/x.png" alt="remote">',
        '<link rel="stylesheet" href="style.css">',
        '<a href="confusion.png">file</a>',
        '<script src="https://cdn.example.org/x.js"></script>',
        '<div style="background: url(bg.png)">x</div>',
        '<p class="report-error">boom</p>',
    ],
)
def test_checker_rejects_external_assets(full_report, tmp_path: Path, injected: str) -> None:
    path, studies, has_classics = full_report
    broken = tmp_path / "broken.html"
    shutil.copyfile(path, broken)
    text = broken.read_text(encoding="utf-8").replace("</main>", f"{injected}\n</main>")
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(AssertionError):
        assert_report_complete(broken, studies, classics=has_classics)
