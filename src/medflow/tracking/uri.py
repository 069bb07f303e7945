"""Where runs go: the tracking URI, the artifact root, and whether the store is a local file.

Standard library only: the sweep init/best and report paths import this without paying for mlflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from medflow.layout import Layout


def resolve_tracking_uri(configured: str | None, results_dir: Path) -> str:
    """Config value, then ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<results_dir>/mlflow.db``."""
    if configured:
        return configured
    if env_uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return env_uri
    # Absolute so that jobs running from another working directory hit the same file.
    return f"sqlite:///{Layout(Path(results_dir)).tracking_db().resolve()}"


def resolve_artifact_root(tracking_uri: str, results_dir: Path) -> str | None:
    """``results_dir/mlartifacts`` for a local store; None lets a tracking server decide."""
    if is_local_store(tracking_uri):
        return Layout(Path(results_dir)).artifacts().resolve().as_uri()
    return None


def is_local_store(tracking_uri: str) -> bool:
    """True for ``file:``/``sqlite:`` URIs and bare paths, False for servers and databases."""
    scheme = urlparse(tracking_uri).scheme
    if scheme in {"file", "sqlite"}:
        return True
    # A bare path is a local file store; bare words such as "databricks" are remote.
    return scheme == "" and ("/" in tracking_uri or tracking_uri.startswith("."))


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for other stores and in-memory SQLite."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in {"", ":memory:"} else Path(path)
