"""One self-contained HTML report of a workflow run, to mail to a colleague.

Collects every section's blocks (medflow.render.sections) and renders them with the one
jinja2 template (autoescaped). Figures are PNG data URIs and the CSS is inline, so nothing is
loaded from anywhere; MLflow UI links appear only when its address is given. Each section has
a stable id (``study-<name>``, ``<kind>-<name>``, ``classics``, ``provenance``); one that
fails shows an element of class ``report-error`` instead of aborting the whole report.
Reads results/ and MLflow only; never writes there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import jinja2

from medflow.config.types import MedflowConfig, StudyConfig
from medflow.layout import Layout
from medflow.render.blocks import Block, note
from medflow.render.context import ReportContext
from medflow.render.sections import (
    baselines,
    classics,
    clinical,
    dataset,
    figures,
    provenance,
    representation,
    results,
    signals,
    study,
    sweep,
    volumes,
)
from medflow.tracking.queries import RunReader

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
ERROR_CLASS = "report-error"
Builder = Callable[[ReportContext, StudyConfig], list[Block]]
# Kind -> (title, builder) of each study's subsections, in page order.
STUDY_SECTIONS: dict[str, tuple[str, Builder]] = {
    "dataset": ("Data", dataset.build),
    "sweep": ("Hyper-parameter sweep", sweep.build),
    "results": ("Test results", results.build),
    "figures": ("Best model: confusion matrix and ROC", figures.build),
    "clinical": ("Clinical summary", clinical.build),
    "baselines": ("Baselines", baselines.build),
    "representation": ("Deep representation", representation.build),
    "signals": ("Signals: example series and learned filters", signals.build),
    "volumes": ("Volumes: example slices per class", volumes.build),
}


def render_report(
    cfg: MedflowConfig, layout: Layout, tracking_uri: str, config_text: str | None
) -> str:
    """The report's HTML for the run under ``layout.results``, its runs in ``tracking_uri``."""
    ui_url = cfg.tracking.ui_url
    ctx = ReportContext(
        cfg=cfg,
        layout=layout,
        mlflow=RunReader.open(tracking_uri),
        ui_url=ui_url.rstrip("/") if ui_url else None,
    )
    sections = [_study_section(ctx, s) for s in cfg.studies.values()]
    empty = [note("The config defines no studies.")] if not cfg.studies else []
    sections.append(
        _guarded("classics", "Classic perceptron exercises", partial(classics.build, ctx), 2)
    )
    sections.append(
        _guarded("provenance", "Provenance", partial(provenance.build, ctx, config_text), 2)
    )
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            studies=list(cfg.studies),
            study_kinds=list(STUDY_SECTIONS),
            sections=sections,
            empty=empty,
            results=layout.results.resolve(),
            store=ctx.mlflow.uri,
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=provenance.version("medflow"),
            error_class=ERROR_CLASS,
        )
    )


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("medflow.render", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _section(
    section_id: str, title: str, blocks: list[Block], level: int, css: str = ""
) -> dict[str, Any]:
    return {"id": section_id, "title": title, "level": level, "css": css, "blocks": blocks}


def _guarded(
    section_id: str, title: str, build: Callable[[], list[Block]], level: int = 3
) -> dict[str, Any]:
    """The section built by ``build``, or one that says why building it failed."""
    section = _section(section_id, title, [], level)
    try:
        section["blocks"] = build()
    except Exception as exc:
        log.exception("report section %s failed", section_id)
        section["error"] = f"This section could not be built: {type(exc).__name__}: {exc}"
    return section


def _study_section(ctx: ReportContext, config: StudyConfig) -> dict[str, Any]:
    section = _section(f"study-{config.name}", f"Study {config.name}", [], 2, "study")
    section["blocks"] = study.build(ctx, config)
    section["children"] = [
        _guarded(f"{kind}-{config.name}", title, partial(build, ctx, config))
        for kind, (title, build) in STUDY_SECTIONS.items()
    ]
    return section
