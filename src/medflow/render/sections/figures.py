"""Evaluate's confusion matrix and ROC curves of the model best on validation, per class."""

from __future__ import annotations

import pandas as pd

from medflow.config.types import StudyConfig
from medflow.render.blocks import Block, heading, note, p, png_file, table
from medflow.render.context import ReportContext, read_json


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    layout = ctx.layout
    metrics = read_json(layout.evaluate_metrics(study.name))
    if metrics is None:
        return [note("No test evaluation yet, so no confusion matrix or ROC.")]
    best = metrics.get("best_on_validation") or {}
    who = f"{best.get('mode')} seed {best.get('seed')}"
    blocks = [
        p(f"Best model on validation: {who}, run ", ctx.run_link(best.get("run_id")), "."),
        png_file(
            layout.evaluate_confusion(study.name), f"Confusion matrix on test ({who}).", "confusion"
        ),
        png_file(layout.evaluate_roc(study.name), f"ROC curves on test ({who}).", "ROC"),
    ]
    per_class = best.get("per_class")
    if per_class:
        blocks += [heading("Per class (test)"), table(pd.DataFrame(per_class), scroll=True)]
    return blocks
