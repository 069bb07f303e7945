"""Dataset cards: each prepared dataset's source, task, shape, classes, splits and hash."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from medflow.config.types import StudyConfig
from medflow.render.blocks import TIMES, Block, facts_table, heading, joined, note, p, table
from medflow.render.context import ReportContext, read_json

MAX_CLASSES_SHOWN = 20
MAX_CLASSES_COUNTED = 30


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    blocks = [heading(f"Target: {study.target}"), *card(ctx, study.target)]
    if study.pretrain is not None:
        blocks += [
            heading(f"Pretraining source: {study.pretrain.dataset}"),
            *card(ctx, study.pretrain.dataset),
        ]
    else:
        blocks.append(p("No pretraining source: this study trains from scratch only."))
    return blocks


def card(ctx: ReportContext, name: str) -> list[Block]:
    meta = read_json(ctx.layout.prepared_meta(name))
    if meta is None:
        return [note(f"Dataset {name} is not prepared (no meta.json).")]
    classes = meta.get("class_names") or []
    shown = joined(classes[:MAX_CLASSES_SHOWN]) + (" …" if len(classes) > MAX_CLASSES_SHOWN else "")
    facts = {
        "source": meta.get("source"),
        "task": meta.get("task"),
        "kind": meta.get("kind"),
        "input shape": joined(meta.get("input_shape") or [], f" {TIMES} "),
        "classes": f"{meta.get('n_classes')} ({shown})",
        "split sizes": joined(f"{k} {v}" for k, v in (meta.get("split_sizes") or {}).items()),
        "splits from the source": meta.get("splits_from_source"),
        "dataset hash": meta.get("content_hash"),
        **{f"note: {k}": v for k, v in (meta.get("notes") or {}).items()},
    }
    return [facts_table(facts), *class_counts(meta)]


def class_counts(meta: Mapping[str, Any]) -> list[Block]:
    counts = meta.get("class_counts") or {}
    names = meta.get("class_names") or []
    if not counts or not names or any(v is None for v in counts.values()):
        return []
    if len(names) > MAX_CLASSES_COUNTED:
        return [p(f"{len(names)} classes; per-class counts left out.")]
    df = pd.DataFrame({split: values for split, values in counts.items()}, index=names).T
    return [p("Examples per class and split:"), table(df, index=True)]
