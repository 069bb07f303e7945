"""What a dataset's config alone says about its inputs: the data kind and, where the
source fixes it, the shape of one example. Used to refuse at validation what would
otherwise fail only after preparing and pretraining (a 28x28 backbone for 8x8 targets)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from medflow.data.medmnist_info import medmnist_info


@dataclass(frozen=True)
class DeclaredInput:
    kind: str  # tabular | image | sequence | volume
    shape: tuple[int, ...] | None  # one example, no batch dim; None: known after prepare
    task: str | None = None  # when the config fixes it (e.g. csv options.task: regression)

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else "?"
        return f"{self.kind} {shape}"


def _csv(options: Mapping[str, Any]) -> DeclaredInput:
    task = options.get("task")
    return DeclaredInput("tabular", None, None if task in (None, "auto") else task)


def _medmnist(options: Mapping[str, Any]) -> DeclaredInput:
    info = medmnist_info()[options["flag"]]
    size, channels = int(options["size"]), int(info["n_channels"])
    task = "multilabel" if info["task"].startswith("multi-label") else None
    if options["flag"].endswith("3d"):
        return DeclaredInput("volume", (channels, size, size, size), task)
    return DeclaredInput("image", (channels, size, size), task)


def _square(options: Mapping[str, Any], channels: int) -> DeclaredInput:
    size = int(options["image_size"])
    return DeclaredInput("image", (channels, size, size))


_DECLARED: Mapping[str, Callable[[Mapping[str, Any]], DeclaredInput]] = {
    "gates": lambda o: DeclaredInput("tabular", (2,), "binary"),
    "sklearn_breast_cancer": lambda o: DeclaredInput("tabular", (30,), "binary"),
    "sklearn_digits": lambda o: DeclaredInput("image", (1, 8, 8), "multiclass"),
    "synthetic": lambda o: _square(o, 1),
    "imagefolder": lambda o: _square(o, int(o["channels"])),
    "medmnist": _medmnist,
    "csv": _csv,
    "synthetic_signals": lambda o: DeclaredInput("sequence", None),
    "ucr": lambda o: DeclaredInput("sequence", None),
    "wfdb": lambda o: DeclaredInput("sequence", None),
    "synthetic_volumes": lambda o: DeclaredInput("volume", (1, *[int(o["size"])] * 3)),
}


def declared_input(source: str, options: Mapping[str, Any]) -> DeclaredInput | None:
    """The kind and shape a dataset's config promises; None for a source not listed here."""
    declare = _DECLARED.get(source)
    return declare(options) if declare else None
