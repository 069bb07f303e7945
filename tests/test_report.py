"""The HTML report, built from a real results folder named by MEDFLOW_REPORT_RESULTS.

    MEDFLOW_REPORT_RESULTS=/path/to/results .venv/bin/pytest tests/test_report.py

The results folder is only read; the report is written to pytest's tmp_path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.report_checks import assert_report_complete

RESULTS = os.environ.get("MEDFLOW_REPORT_RESULTS")
UI_URL = "http://127.0.0.1:5000"

pytestmark = pytest.mark.skipif(
    not RESULTS,
    reason="set MEDFLOW_REPORT_RESULTS to a results folder of a complete run to test the report",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bool]:
    from medflow.config.types import load_config
    from medflow.layout import Layout
    from medflow.render.build import build_report

    config_path = REPO / "config" / "config.yaml"
    cfg = load_config(config_path)
    layout = Layout(Path(RESULTS))
    out = tmp_path_factory.mktemp("report") / "report.html"
    path = build_report(cfg, layout, out, config_text=config_path.read_text(), mlflow_ui_url=UI_URL)
    assert path == out
    has_classics = layout.classics_json().exists()
    return path, list(cfg.studies), has_classics


def test_report_is_complete_and_self_contained(report) -> None:
    path, studies, has_classics = report
    assert_report_complete(path, studies, classics=has_classics)


def test_mlflow_links_are_plain_links(report) -> None:
    path, _, _ = report
    text = path.read_text(encoding="utf-8")
    assert f'<a href="{UI_URL}/#/experiments/' in text
    assert f'src="{UI_URL}' not in text


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
def test_checker_rejects_external_assets(report, tmp_path: Path, injected: str) -> None:
    path, studies, has_classics = report
    broken = tmp_path / "broken.html"
    shutil.copyfile(path, broken)
    text = broken.read_text(encoding="utf-8").replace("</main>", f"{injected}\n</main>")
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(AssertionError):
        assert_report_complete(broken, studies, classics=has_classics)
