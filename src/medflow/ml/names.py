"""One message for a name missing from a registry (optimizer, schedule, task, loss)."""

from __future__ import annotations

from collections.abc import Iterable


def check_known(kind: str, name: str, known: Iterable[str]) -> None:
    known = tuple(known)
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(known)}")
