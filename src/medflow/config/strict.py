"""Typed dataclass configs from plain mappings (parsed YAML/JSON), refusing unknown keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def reject_unknown_keys(
    cls: type, data: Mapping[str, Any], error: type[Exception] = ValueError
) -> None:
    """Raise ``error`` naming every key of ``data`` that is not a field of dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise error(
            f"unknown {cls.__name__} keys: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(names))}"
        )
