"""``snakemake --report report.zip`` after a real (tiny) run of the whole workflow: every
output marked with ``report()`` is in the zip, byte for byte, under its category, with
its caption from workflow/report/ rendered (wildcards filled in). Called from the
whole-DAG test in test_pipeline, which has just made every marked output."""

from __future__ import annotations

import html
import json
import re
import time
import zipfile
from pathlib import Path

from tests.conftest import REPO, run_snakemake

# Marked output -> (caption file in workflow/report/, category, subcategory).
MARKED = {
    "results/sweeps/tiny/trials.csv": ("trials.rst", "Sweep", "Other"),
    "results/evaluate/tiny/confusion.png": ("confusion.rst", "Evaluation", "tiny"),
    "results/evaluate/tiny/roc.png": ("roc.rst", "Evaluation", "tiny"),
    "results/report/index.html": ("report.rst", "Report", "Other"),
}
STUDY_WILDCARD = re.compile(r"\{\{\s*snakemake\.wildcards\.study\s*\}\}")


def _report_variable(page: str, name: str) -> dict:
    """The JSON object of ``<script id="<name>"> var <name> = {...};`` in the report."""
    found = re.search(rf'<script id="{name}">\s*var {name} = ', page)
    assert found, f"no {name} in the report"
    start = found.end()
    value, _ = json.JSONDecoder().raw_decode(page, start)
    return value


def _plain(text: str) -> str:
    return " ".join(text.split())


def _expected_caption(caption_file: str, study: str) -> str:
    """The caption's words as the report shows them: wildcards filled in, no markup."""
    source = (REPO / "workflow/report" / caption_file).read_text()
    return _plain(STUDY_WILDCARD.sub(study, source).replace("``", ""))


def assert_report_zip_has_every_marked_output(workdir: Path, config: Path) -> None:
    """Run ``snakemake --report`` in the finished workdir and check the zip."""
    started = time.perf_counter()
    archive = workdir / "report.zip"
    made = run_snakemake(
        "--report", str(archive), "--configfile", str(config), workdir=workdir, timeout=300
    )
    assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-4000:]
    print(f"snakemake --report: {time.perf_counter() - started:.1f}s")

    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        page = zipped.read("report/report.html").decode()
        results = _report_variable(page, "results")
        categories = _report_variable(page, "categories")
        assert set(results) >= set(MARKED), sorted(results)
        for path, entry in results.items():
            # Every marked output has a caption, and its file is in the zip unchanged.
            assert entry["caption"].strip(), f"{path} has no caption"
            member = f"report/{entry['data_uri']}"
            assert member in names, (path, member)
            assert zipped.read(member) == (workdir / path).read_bytes(), path

    for path, (caption_file, category, subcategory) in MARKED.items():
        shown = _plain(html.unescape(re.sub(r"<[^>]+>", "", results[path]["caption"])))
        assert shown == _expected_caption(caption_file, "tiny"), path
        assert "{{" not in shown, path
        assert path in categories[category][subcategory], (path, categories)
