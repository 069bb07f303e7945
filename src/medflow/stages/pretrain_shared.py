"""A backbone another study already pretrained with the same settings, taken over as this
study's own (MedflowConfig.pretrained_by decides which): the files are copied, so every
later stage and the report read the study's own pretrain folder; the MLflow run stays the
one that trained it, in the other study's experiment."""

from __future__ import annotations

import json
import logging

from medflow.layout import Layout
from medflow.runtime.io import atomic_write_bytes, write_json_atomic

log = logging.getLogger(__name__)


def take_over(layout: Layout, owner: str, study: str, activation: str) -> None:
    """Copy ``owner``'s ``activation`` backbone, result and run id into ``study``'s folder;
    result.json names the study that trained it (``pretrained_by``)."""
    result = json.loads(layout.pretrain_result(owner, activation).read_text())
    atomic_write_bytes(
        layout.pretrain_model(study, activation),
        layout.pretrain_model(owner, activation).read_bytes(),
    )
    write_json_atomic({**result, "pretrained_by": owner}, layout.pretrain_result(study, activation))
    atomic_write_bytes(
        layout.pretrain_run_id(study, activation),
        layout.pretrain_run_id(owner, activation).read_bytes(),
    )
    log.info(
        "pretrain %s/%s: the backbone of study %s (same pretraining), run %s",
        study,
        activation,
        owner,
        result["run_id"],
    )
