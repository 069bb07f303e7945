"""The report stage: renders the self-contained HTML report from the files earlier jobs
wrote (JSON/PNG/CSV under results/) and the MLflow store. It computes nothing and never
opens test data; what needs the test split is the analyze and evaluate stages' job."""

from __future__ import annotations

from pathlib import Path

from medflow.config.types import MedflowConfig
from medflow.render.page import render_report
from medflow.runtime.io import atomic_write_bytes
from medflow.stages.context import StageContext


def run(ctx: StageContext, config: MedflowConfig, config_text: str) -> Path:
    """Write the report of the run under ``ctx.layout`` to ``ctx.layout.report()``."""
    html = render_report(config, ctx.layout, ctx.tracking_uri(), config_text)
    return atomic_write_bytes(ctx.layout.report(), html.encode("utf-8"))
