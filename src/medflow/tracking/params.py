"""Values as MLflow stores them: nested mappings flattened to dotted keys, everything a string."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

FAILURE_REASON_MAX = 1000


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` with every value stringified."""
    flat: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = stringify(value)
    return flat


def stringify(value: Any) -> str:
    """Strings as they are, containers as compact JSON, anything else through ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def one_line(text: str, limit: int = FAILURE_REASON_MAX) -> str:
    """Whitespace collapsed to single spaces, cut at ``limit`` characters (for tags)."""
    return " ".join(text.split())[:limit]


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of at most ``size`` items (MLflow's per-batch limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
