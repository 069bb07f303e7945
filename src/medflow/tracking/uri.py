"""Where runs go: the tracking URI, the artifact root, and whether the store is a local file.

Standard library only: the sweep init/best and report paths import this without paying for mlflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from medflow.errors import ConfigError
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


def check_store_present(configured: str | None, results_dir: Path) -> None:
    """Refuse to start when the SQLite store that recorded the runs of ``results_dir`` is
    gone: the finished jobs' outputs would look complete to Snakemake while every run id
    they hold points at nothing (evaluate would fail with "Run with id=... not found")."""
    db = sqlite_path(resolve_tracking_uri(configured, results_dir))
    if db is None or db.exists():
        return
    recorded = _first_run_id_file(Path(results_dir))
    if recorded is not None:
        raise ConfigError(
            f"the tracking store {db} is missing, but {recorded} holds the id of a run "
            f"recorded in it; restore {db.name}, or delete {results_dir} to run everything again"
        )


def _first_run_id_file(results_dir: Path) -> Path | None:
    names = {Layout.run_id_file(Path()).name, Layout.parent_run_id_file(Path()).name}
    for folder, _, files in os.walk(results_dir):
        for name in files:
            if name in names:
                return Path(folder) / name
    return None
