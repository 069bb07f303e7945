"""The read side of the tracking store, for the report: runs by id (cached), metric
histories, and whether a local store exists at all (opening a client would create one).
Every failure is remembered as one line the report can show instead of aborting."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from medflow.tracking.uri import is_local_store, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

_UNREACHABLE_WORDS = ("connection", "timeout", "max retries", "unreachable")


def local_store_path(uri: str) -> Path | None:
    """The file or folder of a local store (SQLite file, file: folder, bare path), else None."""
    if uri.startswith("sqlite:"):
        return sqlite_path(uri)
    if not is_local_store(uri):
        return None
    return Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)


def is_unreachable(exc: Exception) -> bool:
    """Whether ``exc`` says the store cannot be reached (then stop asking it)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in _UNREACHABLE_WORDS)


@dataclass
class RunReader:
    """Read-only access to the store; remembers runs and the first failure (``problem``)."""

    uri: str
    client: MlflowClient | None
    problem: str | None = None
    _runs: dict[str, Run | None] = field(default_factory=dict)

    @classmethod
    def open(cls, uri: str) -> RunReader:
        local = local_store_path(uri)
        if local is not None and not local.exists():
            # Creating a client would create an empty store inside results/.
            return cls(uri, None, f"no MLflow store at {local}")
        try:
            from mlflow import MlflowClient

            return cls(uri, MlflowClient(tracking_uri=uri))
        except Exception as exc:
            return cls(uri, None, f"cannot open the MLflow store {uri}: {exc}")

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.client is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            log.warning("MLflow request failed (%s); using no MLflow data", exc)
            if is_unreachable(exc):
                self.problem, self.client = f"MLflow store unreachable: {exc}", None
            return None

    def run(self, run_id: str | None) -> Run | None:
        """The run, or None when there is no id, no store or the request failed."""
        if not run_id or self.client is None:
            return None
        if run_id not in self._runs:
            self._runs[run_id] = self._call(self.client.get_run, run_id)
        return self._runs[run_id]

    def history(self, run_id: str | None, key: str) -> list[tuple[int, float]]:
        """(step, value) of every logged value of ``key``, by step."""
        if not run_id or self.client is None:
            return []
        metrics = self._call(self.client.get_metric_history, run_id, key) or []
        return sorted((int(m.step), float(m.value)) for m in metrics)
