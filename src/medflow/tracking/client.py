"""MLflow layer: the project's system of record for runs, params, metrics and models.

Everything goes through an explicit ``MlflowClient`` and explicit run ids. MLflow's fluent API
(``mlflow.start_run`` / ``mlflow.log_*``) keeps a process-global "active run" and tracking URI,
which breaks as soon as two trials share a process (Optuna threads) or a helper runs while
another run is active, so it is never used here.

SQLite is the default store and several Snakemake jobs write to it at once, so every store call
is retried while SQLite reports "database is locked" (see ``retry_locked``), and the first
creation of a store file is serialised with a file lock because MLflow's schema migration is not
safe against concurrent initialisers.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import mlflow
import mlflow.artifacts
from mlflow.entities import LoggedModel, Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from medflow.runtime.interrupts import handler_installed, signals_deferred

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "FAILURE_REASON_TAG",
    "PARENT_RUN_TAG",
    "RUN_STATUSES",
    "Terminated",
    "Tracker",
    "config_hash",
    "find_runs",
    "flatten",
    "git_commit",
    "mark_run_failed",
    "resolve_artifact_root",
    "resolve_tracking_uri",
    "retry_locked",
    "standard_tags",
    "tracked_run",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

RUN_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
PARENT_RUN_TAG = "mlflow.parentRunId"
FAILURE_REASON_TAG = "failure_reason"

LOCK_RETRY_BUDGET_S = 60.0
_FAILURE_REASON_MAX = 1000
_SEARCH_PAGE_SIZE = 1000


# --------------------------------------------------------------------------- URIs


def resolve_tracking_uri(configured: str | None, results_dir: Path) -> str:
    """Config value, then ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<results_dir>/mlflow.db``."""
    if configured:
        return configured
    if env_uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return env_uri
    # Absolute so that jobs running from another working directory hit the same file.
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def resolve_artifact_root(tracking_uri: str, results_dir: Path) -> str | None:
    """``results_dir/mlartifacts`` for a local store; None lets a tracking server decide."""
    if _is_local_store(tracking_uri):
        return (Path(results_dir) / "mlartifacts").resolve().as_uri()
    return None


def _is_local_store(tracking_uri: str) -> bool:
    scheme = urlparse(tracking_uri).scheme
    if scheme in {"file", "sqlite"}:
        return True
    # A bare path is a local file store; bare words such as "databricks" are remote.
    return scheme == "" and ("/" in tracking_uri or tracking_uri.startswith("."))


def _sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in {"", ":memory:"} else Path(path)


# --------------------------------------------------------------------------- retries


def _is_locked_error(exc: BaseException) -> bool:
    """True for SQLite lock contention, however deeply MLflow/SQLAlchemy wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "database is locked" in str(current) or (
            type(current).__name__ == "OperationalError" and "locked" in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_locked(call: Callable[[], T], *, budget_s: float = LOCK_RETRY_BUDGET_S) -> T:
    """Run ``call``; while SQLite says "locked", back off (jittered, exponential) and retry.

    After ``budget_s`` the last error is raised: a write is delayed, never silently dropped.
    Retrying is safe because MLflow rolls back the whole transaction of a failed store call.
    """
    # SystemRandom: never touches (or is reset by) the seeded global RNG used for training.
    jitter = random.SystemRandom()
    deadline = time.monotonic() + budget_s
    delay = 0.05
    while True:
        try:
            return call()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if not _is_locked_error(exc) or remaining <= 0:
                raise
            _log.debug("store locked, retrying in ~%.2fs", delay)
        time.sleep(min(delay * jitter.uniform(0.5, 1.5), remaining))
        delay = min(delay * 2, 2.0)


@contextmanager
def _store_init_lock(db_path: Path | None) -> Iterator[None]:
    """Exclusive lock while a store file is created/migrated, shared lock otherwise.

    A client migrates an empty SQLite file when it first opens it, without the file lock that
    MLflow's own server uses for this (``_safe_initialize_tables``), so parallel jobs on a new
    results dir would run the migration concurrently. Openers of an initialised store only take
    the shared lock: they run in parallel but wait for a migration in progress.
    """
    if db_path is None:
        yield
        return
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not db_path.exists() or db_path.stat().st_size == 0
    with open(db_path.with_name(db_path.name + ".init-lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX if fresh else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- values


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` with every value stringified."""
    flat: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = _stringify(value)
    return flat


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def _one_line(text: str, limit: int = _FAILURE_REASON_MAX) -> str:
    return " ".join(text.split())[:limit]


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


def _model_pip_requirements() -> list[str]:
    import mlflow.pytorch

    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={version('numpy')}",
        *mlflow.pytorch.get_default_pip_requirements(),
    ]


# --------------------------------------------------------------------------- tracker


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
        with _store_init_lock(_sqlite_path(tracking_uri)):
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

        return retry_locked(attempt)

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
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.call(self.client.log_batch, run_id, params=chunk)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        entries = [
            RunTag(key, _stringify(value)[:MAX_TAG_VAL_LENGTH])
            for key, value in tags.items()
            if value is not None
        ]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.call(self.client.log_batch, run_id, tags=chunk)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics for ``step``; sent on ``flush``/``end_run``, when full, or when old."""
        timestamp = _now_ms()
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
            for chunk in _chunks(pending, MAX_METRICS_PER_BATCH):
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

    def log_torch_model(
        self,
        run_id: str,
        model: torch.nn.Module,
        input_example: np.ndarray,
        name: str = "model",
        *,
        step: int = 0,
        pip_requirements: list[str] | None = None,
    ) -> str:
        """Log ``model`` as an MLflow 3 LoggedModel of the run; returns ``runs:/<id>/<name>``.

        ``mlflow.pytorch.log_model`` is not used: without a fluent active run it files the
        LoggedModel under the globally "current" experiment (Default) rather than the run's,
        so ``runs:/<run_id>/<name>`` cannot find it, and it resolves the store from the global
        tracking URI. Starting a fluent run around it would be process-global state. Instead
        this does the same steps with explicit ids: create the LoggedModel in the run's
        experiment, ``save_model`` locally, upload, link it as a run output, mark it READY.

        A CPU copy in eval mode is exported as "pt2" (``torch.export``, MLflow's default, and
        loadable without allowing pickle); use a batch size > 1 in ``input_example`` so the
        batch dimension stays dynamic. ``pip_requirements`` default to pinned mlflow/torch/numpy
        because MLflow's inference reloads the model in a subprocess (~15 s per model).
        """
        import mlflow.pytorch
        import torch
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model, infer_signature

        self.flush(run_id)
        cpu_model = copy.deepcopy(model).cpu().eval()
        with torch.no_grad():
            output = cpu_model(torch.from_numpy(input_example))
        signature = infer_signature(input_example, output.detach().numpy())

        experiment_id = self.get_run(run_id).info.experiment_id
        logged = self.call(
            self.client.create_logged_model,
            experiment_id=experiment_id,
            name=name,
            source_run_id=run_id,
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / name
                mlflow.pytorch.save_model(
                    cpu_model,
                    str(local),
                    mlflow_model=Model(
                        artifact_path=logged.artifact_location,
                        run_id=run_id,
                        model_uuid=logged.model_id,
                        model_id=logged.model_id,
                    ),
                    signature=signature,
                    input_example=input_example,
                    serialization_format="pt2",
                    pip_requirements=pip_requirements or _model_pip_requirements(),
                )
                self.call(self.client.log_model_artifacts, logged.model_id, str(local))
            self.call(self.client.log_outputs, run_id, [LoggedModelOutput(logged.model_id, step)])
        except BaseException:
            self._finalize_failed_model(logged.model_id)
            raise
        self.call(self.client.finalize_logged_model, logged.model_id, "READY")
        return f"runs:/{run_id}/{name}"

    def _finalize_failed_model(self, model_id: str) -> None:
        try:
            self.call(self.client.finalize_logged_model, model_id, "FAILED")
        except Exception:
            # Keep the original error; a PENDING model is harmless and shows as such in the UI.
            _log.exception("could not mark logged model %s FAILED", model_id)

    def load_torch_model(self, run_id: str, name: str = "model") -> torch.nn.Module:
        """Load a model logged by ``log_torch_model`` from this tracker's store (not the global).

        Not through ``runs:/<run_id>/<name>``: MLflow resolves the LoggedModel behind that URI
        with a client on the *global* tracking URI (``ModelsArtifactRepository``), which is
        another store (a tracking server, or a new ./mlflow.db) unless $MLFLOW_TRACKING_URI
        happens to name this one. The run's model outputs name the model explicitly.
        """
        import mlflow.pytorch

        location = self._logged_model(run_id, name).artifact_location
        with tempfile.TemporaryDirectory() as tmp:
            local = self.call(
                mlflow.artifacts.download_artifacts,
                artifact_uri=location,
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
            )
            return mlflow.pytorch.load_model(local)

    def _logged_model(self, run_id: str, name: str) -> LoggedModel:
        """The newest READY model called ``name`` among the run's model outputs."""
        outputs = self.get_run(run_id).outputs
        for output in reversed(outputs.model_outputs if outputs else []):
            model = self.call(self.client.get_logged_model, output.model_id)
            if model.name == name and str(model.status) == "READY":
                return model
        raise MlflowException(f"run {run_id} has no logged model named {name!r}")


# --------------------------------------------------------------------------- run lifecycle


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM inside ``tracked_run``.

    A BaseException so that ``except Exception`` in training code cannot swallow it. An entry
    point may exit with ``exc.exit_code`` (143) to report the signal the conventional way.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


class _SigtermGuard:
    """SIGTERM handler: raise ``Terminated`` once while armed, afterwards only remember it."""

    def __init__(self) -> None:
        self.armed = True
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        self.received = True
        if self.armed:
            self.armed = False
            raise Terminated(signum)


@contextmanager
def _sigterm_guard() -> Iterator[_SigtermGuard]:
    guard = _SigtermGuard()
    with handler_installed(guard, (signal.SIGTERM,)) as previous:
        guard.armed = previous is not None  # off the main thread it never runs
        yield guard


def _failure_reason(exc: BaseException) -> str:
    message = _one_line(str(exc))
    return _one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


@contextmanager
def tracked_run(
    tracker: Tracker,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Run id of a new run that ends FINISHED, FAILED (exception) or KILLED (Ctrl-C/SIGTERM).

    A run already ended inside the block (e.g. ``mark_run_failed`` for divergence) keeps its
    status on normal exit.
    """
    with _sigterm_guard() as guard:
        run_id = tracker.start_run(experiment, run_name, tags, parent_run_id)
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except BaseException as exc:
            guard.armed = False
            status = _status_for(exc)
            if status != "FINISHED":
                _record_failure(tracker, run_id, exc)
            raise
        finally:
            # A SIGTERM now would abort the cleanup and leave the run RUNNING: defer it.
            guard.armed = False
            _close_run(tracker, run_id, status)
        if guard.received:
            # The work finished but we were asked to stop: still exit non-zero.
            raise Terminated()


def _status_for(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | Terminated):
        return "KILLED"
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return "FINISHED"
    return "FAILED"


def _record_failure(tracker: Tracker, run_id: str, exc: BaseException) -> None:
    try:
        tracker.set_tags(run_id, {FAILURE_REASON_TAG: _failure_reason(exc)})
    except Exception:
        # The original exception matters more than the tag; the run still ends FAILED.
        _log.exception("could not record failure reason for run %s", run_id)


def _close_run(tracker: Tracker, run_id: str, status: str) -> None:
    if status == "FINISHED":
        try:
            tracker.flush(run_id)
            already_ended = tracker.get_run(run_id).info.status != "RUNNING"
        except Exception:
            # Results that cannot be saved make the run incomplete; never leave it RUNNING.
            tracker.end_run(run_id, "FAILED")
            raise
        if already_ended:  # e.g. mark_run_failed() for a diverged run
            return
    tracker.end_run(run_id, status)


def mark_run_failed(tracker: Tracker, run_id: str, reason: str) -> None:
    """End a run FAILED with a ``failure_reason`` tag, for failures without an exception."""
    tracker.set_tags(run_id, {FAILURE_REASON_TAG: _one_line(reason)})
    tracker.end_run(run_id, "FAILED")


# --------------------------------------------------------------------------- provenance


def git_commit(cwd: Path | str | None = None) -> str:
    """HEAD commit of the repo at ``cwd``, "-dirty" if tracked files changed, else "unknown"."""
    # No optional locks: `git status` must not take index.lock while other jobs use git.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "--verify", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = head.stdout.strip()
    return f"{commit}-dirty" if dirty.returncode != 0 or dirty.stdout.strip() else commit


def config_hash(cfg: Mapping[str, Any]) -> str:
    """First 12 hex chars of sha256 over canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(
        cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def standard_tags(
    stage: str, study: str, dataset_hash: str, config_hash: str, **extra: Any
) -> dict[str, str]:
    """Provenance tags every run carries, plus extras (mode, seed, parent_model_run_id, ...)."""
    tags = {
        "stage": stage,
        "study": study,
        "dataset_hash": dataset_hash,
        "config_hash": config_hash,
        "git_commit": git_commit(),
        **extra,
    }
    return {key: str(value) for key, value in tags.items() if value is not None}


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
