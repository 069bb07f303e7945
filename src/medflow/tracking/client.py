"""Store client: the ``Tracker`` every stage writes runs, params, metrics and artifacts through.

Everything goes through an explicit ``MlflowClient`` and explicit run ids. MLflow's fluent API
(``mlflow.start_run`` / ``mlflow.log_*``) keeps a process-global "active run" and tracking URI,
which breaks as soon as two trials share a process (Optuna threads) or a helper runs while
another run is active, so it is never used here.

SQLite is the default store and several Snakemake jobs write to it at once, so every store call
is retried while SQLite reports "database is locked", and the first creation of a store file is
serialised with a file lock because MLflow's schema migration is not safe against concurrent
initialisers (both in ``medflow.tracking.retry``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from medflow.errors import MedflowError
from medflow.runtime.interrupts import signals_deferred
from medflow.tracking.params import chunks, flatten, stringify
from medflow.tracking.retry import retry_locked, store_init_lock
from medflow.tracking.uri import resolve_artifact_root, resolve_tracking_uri, sqlite_path

_log = logging.getLogger(__name__)

T = TypeVar("T")

RUN_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
PARENT_RUN_TAG = "mlflow.parentRunId"

_SEARCH_PAGE_SIZE = 1000
_MISSING_RUN = re.compile(r"Run (?:with id=|')([0-9a-f]{32})")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


class Tracker:
    """Explicit-run-id wrapper around ``MlflowClient`` with retries and batched metrics.

    Safe to share between threads. For other processes, build a new Tracker from the same
    ``(tracking_uri, artifact_root)``: it holds a lock and a client, which do not pickle.
    """

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str | Path | None = None,
        *,
        flush_interval_s: float = 15.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = (
            Path(artifact_root).resolve().as_uri()
            if isinstance(artifact_root, Path)
            else artifact_root
        )
        # Metrics are also flushed on age so that long epochs still show up live in the UI.
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._metrics: dict[str, list[Metric]] = {}
        self._oldest: dict[str, float] = {}
        self._experiment_ids: dict[str, str] = {}
        with store_init_lock(sqlite_path(tracking_uri)):
            self.client = retry_locked(lambda: mlflow.MlflowClient(tracking_uri))

    @classmethod
    def for_results(cls, results_dir: Path, configured_uri: str | None = None) -> Tracker:
        """Tracker for the configured/env/default store with artifacts under ``results_dir``."""
        uri = resolve_tracking_uri(configured_uri, results_dir)
        return cls(uri, resolve_artifact_root(uri, results_dir))

    def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``method(*args, **kwargs)`` on the store, retried while SQLite is locked.

        SIGTERM and Ctrl-C take effect after an attempt, not inside it: raised within
        SQLAlchemy they left a transaction that held the SQLite lock, and a terminated sweep
        then spent ~40 s on "database is locked" before its workers could exit.
        """

        def attempt() -> T:
            with signals_deferred():
                return method(*args, **kwargs)

        try:
            return retry_locked(attempt)
        except MlflowException as exc:
            missing = _MISSING_RUN.search(str(exc))
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" and missing:
                raise MedflowError(
                    f"MLflow run {missing.group(1)} is not in the tracking store "
                    f"{self.tracking_uri}: the store was deleted or replaced after the run was "
                    "recorded; restore it, or delete the results of the jobs that recorded it"
                ) from None
            raise

    # ---- experiments and runs

    def get_or_create_experiment(self, name: str) -> str:
        """Experiment id for ``name``, creating it; concurrent creators agree on one id."""
        if cached := self._experiment_ids.get(name):
            return cached
        experiment = self.call(self.client.get_experiment_by_name, name)
        if experiment is None:
            try:
                experiment_id = self.call(
                    self.client.create_experiment, name, self._artifact_location(name)
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.call(self.client.get_experiment_by_name, name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                # A name stays reserved after deletion; restore instead of failing every job.
                _log.warning("restoring deleted MLflow experiment %r", name)
                self.call(self.client.restore_experiment, experiment_id)
        self._experiment_ids[name] = experiment_id
        return experiment_id

    def _artifact_location(self, name: str) -> str | None:
        if self.artifact_root is None:
            return None
        return f"{self.artifact_root.rstrip('/')}/{_slug(name)}"

    def start_run(
        self,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
    ) -> str:
        """Create a RUNNING run and return its id; a parent id nests it in the MLflow UI."""
        experiment_id = self.get_or_create_experiment(experiment)
        all_tags = {key: str(value) for key, value in tags.items()}
        if parent_run_id:
            all_tags[PARENT_RUN_TAG] = parent_run_id
        run = self.call(self.client.create_run, experiment_id, tags=all_tags, run_name=run_name)
        return run.info.run_id

    def get_run(self, run_id: str) -> Run:
        return self.call(self.client.get_run, run_id)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Flush buffered metrics, then mark the run FINISHED / FAILED / KILLED."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {sorted(RUN_STATUSES)}, got {status!r}")
        try:
            self.flush(run_id)
        finally:
            # Even if flushing failed the run must not stay RUNNING.
            self.call(self.client.set_terminated, run_id, status)

    # ---- params, tags, metrics

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log a (nested) mapping as dotted params, values truncated to MLflow's limit."""
        entries = [
            Param(key, value[:MAX_PARAM_VAL_LENGTH]) for key, value in flatten(params).items()
        ]
        for chunk in chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.call(self.client.log_batch, run_id, params=chunk)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        entries = [
            RunTag(key, stringify(value)[:MAX_TAG_VAL_LENGTH])
            for key, value in tags.items()
            if value is not None
        ]
        for chunk in chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.call(self.client.log_batch, run_id, tags=chunk)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics for ``step``; sent on ``flush``/``end_run``, when full, or when old."""
        timestamp = int(time.time() * 1000)
        new = [Metric(key, float(value), timestamp, int(step)) for key, value in metrics.items()]
        with self._lock:
            buffer = self._metrics.setdefault(run_id, [])
            buffer.extend(new)
            oldest = self._oldest.setdefault(run_id, time.monotonic())
            due = (
                len(buffer) >= MAX_METRICS_PER_BATCH
                or time.monotonic() - oldest >= self.flush_interval_s
            )
        if due:
            self.flush(run_id)

    def flush(self, run_id: str) -> None:
        """Send the run's buffered metrics with as few ``log_batch`` calls as possible."""
        with self._lock:
            pending = self._metrics.pop(run_id, [])
            self._oldest.pop(run_id, None)
        sent = 0
        try:
            for chunk in chunks(pending, MAX_METRICS_PER_BATCH):
                self.call(self.client.log_batch, run_id, metrics=chunk)
                sent += len(chunk)
        finally:
            if sent < len(pending):
                self._requeue(run_id, pending[sent:])

    def flush_all(self) -> None:
        with self._lock:
            run_ids = list(self._metrics)
        for run_id in run_ids:
            self.flush(run_id)

    def _requeue(self, run_id: str, unsent: list[Metric]) -> None:
        # Keep what failed to send so a later flush (e.g. in end_run) can deliver it.
        with self._lock:
            self._metrics[run_id] = unsent + self._metrics.get(run_id, [])
            self._oldest.setdefault(run_id, time.monotonic())

    # ---- artifacts

    def log_dict(self, run_id: str, dictionary: dict[str, Any], artifact_file: str) -> None:
        self.call(self.client.log_dict, run_id, dictionary, artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.call(self.client.log_text, run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.call(self.client.log_figure, run_id, figure, artifact_file)

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        self.call(self.client.log_artifact, run_id, str(local_path), artifact_path)


def find_runs(tracker: Tracker, experiment: str, filter_string: str = "") -> list[Run]:
    """All active runs of ``experiment`` matching ``filter_string`` (every page)."""
    found = tracker.call(tracker.client.get_experiment_by_name, experiment)
    if found is None:
        return []
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = tracker.call(
            tracker.client.search_runs,
            [found.experiment_id],
            filter_string,
            ViewType.ACTIVE_ONLY,
            _SEARCH_PAGE_SIZE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
