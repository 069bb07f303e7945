"""The deep representation section: first-layer filters and feature maps, drawn by the
analyze stage (it runs the model on test images; the report only embeds its PNGs)."""

from __future__ import annotations

from medflow.config.types import StudyConfig
from medflow.render.blocks import Block, note, p, png_file
from medflow.render.context import ReportContext, read_json


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    layout = ctx.layout
    found = read_json(layout.analysis_representation(study.name))
    if found is None:
        return [note("No representation figures (the analyze stage has not run).")]
    status = found.get("status")
    if status == "not_applicable":
        return [p(found["note"])]
    if status != "done":
        return [note(found.get("note") or f"No representation figures ({status}).")]
    who = f"{found['mode']} seed {found['seed']}"
    folder = layout.analysis_figures(study.name)
    return [
        p(f"Model: best on validation ({who}), {found['model']}."),
        *(
            png_file(folder / item["file"], item["caption"], item["alt"])
            for item in found["figures"]
        ),
    ]
