"""model_card.md: a model card in the spirit of TRIPOD+AI (data and splits, examples per
class, the model and how it was selected, test metrics with intervals, operating point,
calibration, class-imbalance handling, limitations), rendered from evaluate's metrics
document with the jinja2 template templates/model_card.md.j2. Computes nothing itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

from medflow.config.types import StudyConfig
from medflow.render.blocks import NONE, fmt

TEMPLATE = "model_card.md.j2"
HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "auc",
    "f1",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "brier",
    "ece",
    "brier_calibrated",
    "ece_calibrated",
    "mse",
    "r2",
)


def with_ci(stats: Mapping[str, Any] | None) -> str:
    """``mean [ci_low, ci_high]``, or a dash."""
    if not stats or stats.get("mean") is None:
        return NONE
    if stats.get("ci_low") is None or stats.get("ci_high") is None:
        return fmt(stats["mean"])
    return f"{fmt(stats['mean'])} [{fmt(stats['ci_low'])}, {fmt(stats['ci_high'])}]"


def _class_rows(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    counts = meta.get("class_counts") or {}
    names = meta.get("class_names") or []
    splits = [s for s in ("train", "val", "test") if counts.get(s)]
    return [{"class": n, **{s: counts[s][k] for s in splits}} for k, n in enumerate(names)]


def imbalance_handling(study: StudyConfig) -> dict[str, str]:
    """train.class_weight and train.sampler (keys another part of medflow may not yet set)."""
    return {
        "class_weight": str(study.train.get("class_weight", "none")),
        "sampler": str(study.train.get("sampler", "uniform")),
    }


def card_context(study: StudyConfig, meta: Mapping[str, Any], doc: Mapping[str, Any]) -> dict:
    summary = doc.get("summary") or {}
    modes = {m: v for m, v in summary.items() if m != "transfer_gain"}
    metrics = [m for m in HEADLINE if any(m in v for v in modes.values())]
    return {
        "study": study,
        "meta": meta,
        "doc": doc,
        "splits": meta.get("split_sizes") or {},
        "class_rows": _class_rows(meta),
        "split_names": [
            s for s in ("train", "val", "test") if (meta.get("class_counts") or {}).get(s)
        ],
        "metrics": metrics,
        "modes": modes,
        "gain": summary.get("transfer_gain") or {},
        "imbalance": imbalance_handling(study),
        "best": doc.get("best_on_validation") or {},
        "with_ci": with_ci,
        "fmt": fmt,
    }


def render_model_card(study: StudyConfig, meta: Mapping[str, Any], doc: Mapping[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medflow.render", "templates"),
        autoescape=False,  # Markdown, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(**card_context(study, meta, doc))
