"""Cross-section checks of one study that need only the config: the model can take the
target's kind of data, a pretraining source gives the target's input shape, and the
monitor exists for the task. Each failure names both keys (it runs at validation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medflow.data.geometry import DeclaredInput, declared_input
from medflow.errors import ConfigError

# The data kinds each built-in architecture takes (torch-free, so validation stays fast).
# perceptron and mlp flatten any input; a user's model (package.module:factory) is its own
# judge, checked when it is built.
_IMAGE_ONLY = ("image",)
_SEQUENCE_ONLY = ("sequence",)
_VOLUME_ONLY = ("volume",)
ARCH_KINDS: Mapping[str, tuple[str, ...]] = {
    "cnn": _IMAGE_ONLY,
    **{name: _SEQUENCE_ONLY for name in ("lstm", "gru", "cnn1d", "resnet1d", "inception_time")},
    **{name: _VOLUME_ONLY for name in ("cnn3d", "resnet18_3d")},
}
# The arch to suggest for each kind of data when the configured one cannot take it.
SUGGESTED_ARCH = {"tabular": "mlp", "image": "cnn", "sequence": "cnn1d", "volume": "cnn3d"}


def arch_kinds(arch: str) -> tuple[str, ...] | None:
    # The named archs first: resnet1d and resnet18_3d are no torchvision (image) ResNets.
    if arch in ARCH_KINDS:
        return ARCH_KINDS[arch]
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return _IMAGE_ONLY
    return None


def check_study_inputs(
    where: str,
    study: Any,
    datasets: Mapping[str, Any],
) -> None:
    """``where`` is "<file>: studies.<name>"; ``study`` a StudyConfig whose dataset names
    were already checked to exist."""
    target_ds = datasets[study.target]
    target = declared_input(target_ds.source, target_ds.options)
    if target is None:
        return
    _check_arch(where, study, target, f"datasets.{study.target}")
    _check_monitor(where, study, target, f"datasets.{study.target}")
    if study.pretrain is not None:
        source_ds = datasets[study.pretrain.dataset]
        source = declared_input(source_ds.source, source_ds.options)
        if source is not None:
            _check_pretrain(where, study, source, target)


def _check_arch(where: str, study: Any, target: DeclaredInput, target_key: str) -> None:
    arch = study.model["arch"]
    kinds = arch_kinds(arch)
    if kinds is not None and target.kind not in kinds:
        raise ConfigError(
            f"{where}.model.arch: {arch!r} takes {' or '.join(kinds)} data, but "
            f"{target_key} (the target) is {target.kind} data; use e.g. "
            f"arch: {SUGGESTED_ARCH.get(target.kind, 'mlp')}"
        )


def _check_monitor(where: str, study: Any, target: DeclaredInput, target_key: str) -> None:
    monitor = study.train["monitor"]
    if target.task == "regression" and monitor != "val_loss":
        raise ConfigError(
            f"{where}.train.monitor: {monitor} needs class labels, but {target_key}.options.task "
            "is regression; use val_loss"
        )


def _check_pretrain(where: str, study: Any, source: DeclaredInput, target: DeclaredInput) -> None:
    name, target_name = study.pretrain.dataset, study.target
    if source.kind != target.kind:
        raise ConfigError(
            f"{where}.pretrain.dataset: '{name}' is {source.kind} data, but the target "
            f"'{target_name}' (studies.{study.name}.target) is {target.kind} data"
        )
    if source.shape is not None and target.shape is not None and source.shape != target.shape:
        raise ConfigError(
            f"{where}.pretrain.dataset: '{name}' gives {source.describe()} inputs, but the "
            f"target '{target_name}' (studies.{study.name}.target) gives {target.describe()}; "
            f"prepare datasets.{name} at the target's size and channels"
        )
