"""The prepare stage: source -> splits -> subsample -> prepared files + meta.json."""

from __future__ import annotations

import logging
from pathlib import Path

from medflow.config.types import DatasetConfig
from medflow.data.base import Split, fit_on_train
from medflow.data.checks import check_splits
from medflow.data.format import build_meta, write_prepared
from medflow.data.registry import get_loader
from medflow.data.splits import split_pool, subsample_per_class
from medflow.stages.context import StageContext

log = logging.getLogger(__name__)


def run(ctx: StageContext, dataset: DatasetConfig, out: Path | None = None) -> dict:
    """Prepare ``dataset`` into ``out`` (default: its folder in the layout)."""
    return prepare_dataset(dataset, out or ctx.layout.prepared(dataset.name))


def prepare_dataset(cfg: DatasetConfig, out_dir: Path) -> dict:
    """Load, split and write one dataset; returns its meta.json content."""
    data = get_loader(cfg.source)(cfg.options, cfg.seed)
    splits: dict[str, Split] = data.splits if data.has_own_splits else split_pool(data, cfg)
    if cfg.train_per_class is not None:
        splits["train"] = subsample_per_class(
            splits["train"], cfg.train_per_class, cfg.seed, data, cfg.name
        )
    data, splits = fit_on_train(data, splits)  # e.g. a table's imputation and categories
    check_splits(cfg.name, splits, data.task, data.class_names)
    meta = build_meta(cfg.name, data, splits, cfg.to_dict())
    meta = write_prepared(out_dir, splits, meta)
    sizes = ", ".join(f"{s} {n}" for s, n in meta["split_sizes"].items())
    log.info(
        "prepared %s (%s, %s): %s; hash %s",
        cfg.name,
        cfg.source,
        data.task,
        sizes,
        meta["content_hash"],
    )
    return meta
