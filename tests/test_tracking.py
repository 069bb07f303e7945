"""Tests for the medflow.tracking package against real SQLite stores (no mocks of MLflow)."""

from __future__ import annotations

import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from medflow.runtime.digest import config_hash
from medflow.tracking.client import PARENT_RUN_TAG, Tracker, find_runs
from medflow.tracking.models import load_torch_model, log_torch_model
from medflow.tracking.params import flatten
from medflow.tracking.provenance import git_commit, standard_tags
from medflow.tracking.retry import retry_locked, store_init_lock
from medflow.tracking.runs import Terminated, mark_run_failed, tracked_run
from medflow.tracking.uri import resolve_artifact_root, resolve_tracking_uri

SRC = Path(__file__).resolve().parents[1] / "src"
WAIT_S = 60  # upper bound for any wait on a child process


def count_calls(tracker: Tracker, monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Wrap a client method so the test can count real calls that still go to the store."""
    calls: list[Any] = []
    original = getattr(tracker.client, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(tracker.client, name, wrapper)
    return calls


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no output from child within {timeout}s")
    return proc.stdout.readline().strip()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -c`` children; any still running at teardown are killed."""
    procs: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)


# --------------------------------------------------------------------------- pure helpers


def test_flatten_nests_with_dots_and_stringifies() -> None:
    flat = flatten({"model": {"arch": "resnet", "depth": 18, "opt": {"lr": 0.1}}, "tags": [1, 2]})
    assert flat == {
        "model.arch": "resnet",
        "model.depth": "18",
        "model.opt.lr": "0.1",
        "tags": "[1,2]",
    }
    assert flatten({"empty": {}, "none": None}) == {"empty": "{}", "none": "None"}


def test_config_hash_is_canonical() -> None:
    a = config_hash({"b": 1, "a": {"y": [1, 2], "x": "s"}})
    assert a == config_hash({"a": {"x": "s", "y": [1, 2]}, "b": 1})
    assert a != config_hash({"b": 2, "a": {"y": [1, 2], "x": "s"}})
    assert len(a) == 12 and int(a, 16) >= 0


def test_standard_tags_drop_none_and_carry_provenance() -> None:
    tags = standard_tags("finetune", "study1", "dh", "ch", mode="transfer", seed=3, lr=None)
    assert tags["stage"] == "finetune" and tags["study"] == "study1"
    assert tags["dataset_hash"] == "dh" and tags["config_hash"] == "ch"
    assert tags["seed"] == "3" and tags["mode"] == "transfer"
    assert "lr" not in tags and tags["git_commit"]


def test_resolve_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve_tracking_uri(None, tmp_path / "results")
    assert default == f"sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}"
    assert default.startswith("sqlite:////")  # absolute path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://env:5000"
    assert resolve_tracking_uri("sqlite:////cfg.db", tmp_path) == "sqlite:////cfg.db"
    assert resolve_artifact_root(default, tmp_path) == (tmp_path / "mlartifacts").as_uri()
    assert resolve_artifact_root("http://env:5000", tmp_path) is None


def test_git_commit_outside_repo_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_marks_dirty_tree(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "init")
    head = git("rev-parse", "HEAD").strip()
    (tmp_path / "untracked.txt").write_text("ignored for dirtiness")
    assert git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == f"{head}-dirty"


def test_retry_locked_retries_only_lock_errors() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            try:
                raise sqlite3.OperationalError("database is locked")
            except sqlite3.OperationalError as exc:
                raise MlflowException("store error") from exc  # wrapped like MLflow does
        return "ok"

    assert retry_locked(flaky) == "ok" and len(attempts) == 3

    def broken() -> None:
        attempts.append(1)
        raise MlflowException("no such run")

    attempts.clear()
    with pytest.raises(MlflowException, match="no such run"):
        retry_locked(broken)
    assert len(attempts) == 1

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        retry_locked(always_locked, budget_s=0.3)


# --------------------------------------------------------------------------- store round trips


def test_params_round_trip_in_batches(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_calls(tracker, monkeypatch, "log_batch")
    params: dict[str, Any] = {"model": {"arch": "cnn", "layers": [32, 64]}, "long": "x" * 7000}
    params["grid"] = {f"p{i}": i for i in range(150)}
    with tracked_run(tracker, "params", "r", {}) as run_id:
        tracker.log_params(run_id, params)
    logged = tracker.get_run(run_id).data.params
    assert logged["model.arch"] == "cnn" and logged["model.layers"] == "[32,64]"
    assert logged["grid.p149"] == "149" and len(logged) == 153
    assert len(logged["long"]) == 6000  # MLflow's param value limit
    assert len(calls) == 2  # 153 params in chunks of at most 100


def test_metrics_history_and_batching(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_calls(tracker, monkeypatch, "log_batch")
    epochs, keys = 250, ["loss", "val_loss", "acc", "val_acc", "lr"]
    with tracked_run(tracker, "metrics", "r", {}) as run_id:
        for epoch in range(epochs):
            tracker.log_metrics(run_id, {k: i + epoch / 10 for i, k in enumerate(keys)}, epoch)
    for i, key in enumerate(keys):
        history = sorted(tracker.client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(epochs))
        assert [m.value for m in history] == pytest.approx([i + e / 10 for e in range(epochs)])
    # 1250 values: one auto-flush at 1000 buffered, the rest when the run ends.
    assert len(calls) == 2
    assert all(len(kwargs["metrics"]) <= 1000 for _, kwargs in calls)


def test_lock_errors_from_the_store_are_retried_not_dropped(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tracker.client.log_batch
    failures = [1]

    def locked_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            failures.pop()
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return original(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "log_batch", locked_once)
    with tracked_run(tracker, "retry", "r", {}) as run_id:
        tracker.log_metrics(run_id, {"loss": 0.5}, step=0)
    assert not failures
    assert [m.value for m in tracker.client.get_metric_history(run_id, "loss")] == [0.5]


def test_artifacts_land_under_artifact_root(tracker: Tracker, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    with tracked_run(tracker, "my exp/1", "r", {}) as run_id:
        tracker.log_dict(run_id, {"a": 1}, "cfg/config.json")
        tracker.log_text(run_id, "hello", "notes.txt")
        tracker.log_artifact(run_id, report, "tables")
    names = {f.path for f in tracker.client.list_artifacts(run_id)}
    assert names == {"cfg", "notes.txt", "tables"}
    artifact_dir = tmp_path / "mlartifacts" / "my_exp_1" / run_id / "artifacts"
    assert (artifact_dir / "cfg" / "config.json").read_text().strip().startswith("{")


def test_experiment_creation_is_race_safe(tracker: Tracker) -> None:
    # Separate Trackers (no shared id cache) race on one name through the same store.
    trackers = [Tracker(tracker.tracking_uri, tracker.artifact_root) for _ in range(6)]
    barrier = threading.Barrier(len(trackers))
    ids: list[str] = []

    def create(t: Tracker) -> None:
        barrier.wait(timeout=WAIT_S)
        ids.append(t.get_or_create_experiment("shared"))

    threads = [threading.Thread(target=create, args=(t,)) for t in trackers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S)
    assert len(ids) == len(trackers) and len(set(ids)) == 1


def test_child_run_is_nested_under_parent(tracker: Tracker) -> None:
    with tracked_run(tracker, "sweep", "parent", {"stage": "sweep"}) as parent_id:
        for trial in range(2):
            tags = {"stage": "trial", "trial": str(trial)}
            with tracked_run(tracker, "sweep", f"t{trial}", tags, parent_run_id=parent_id) as cid:
                tracker.log_metrics(cid, {"score": trial}, step=0)
    children = find_runs(tracker, "sweep", f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.info.run_name for r in children) == ["t0", "t1"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert tracker.get_run(parent_id).info.status == "FINISHED"
    assert PARENT_RUN_TAG not in tracker.get_run(parent_id).data.tags
    assert find_runs(tracker, "no-such-experiment") == []


# --------------------------------------------------------------------------- run lifecycle


def test_tracked_run_marks_failure_with_reason(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="bad"), tracked_run(tracker, "life", "r", {}) as run_id:
        tracker.log_metrics(run_id, {"loss": 1.0}, step=0)
        raise ValueError("bad\n  input")
    run = tracker.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "ValueError: bad input"
    assert run.data.metrics["loss"] == 1.0  # buffered metrics are flushed before ending


def test_tracked_run_keyboard_interrupt_is_killed(tracker: Tracker) -> None:
    with pytest.raises(KeyboardInterrupt), tracked_run(tracker, "life", "r", {}) as run_id:
        raise KeyboardInterrupt
    run = tracker.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "KeyboardInterrupt"


def test_metrics_flush_when_buffer_gets_old(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = Tracker(tracker.tracking_uri, flush_interval_s=0.0)
    calls = count_calls(live, monkeypatch, "log_batch")
    with tracked_run(live, "live", "r", {}) as run_id:
        for step in range(3):
            live.log_metrics(run_id, {"loss": step}, step)
        assert len(calls) == 3  # visible while the run is still going
    assert len(live.client.get_metric_history(run_id, "loss")) == 3


def test_diverged_run_stays_failed(tracker: Tracker) -> None:
    with tracked_run(tracker, "life", "r", {}) as run_id:
        mark_run_failed(tracker, run_id, "diverged: loss is nan\nat epoch 3")
    run = tracker.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "diverged: loss is nan at epoch 3"


def test_tracked_run_restores_sigterm_handler(tracker: Tracker) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with tracked_run(tracker, "life", "r", {}) as run_id:
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert tracker.get_run(run_id).info.status == "FINISHED"
    assert issubclass(Terminated, BaseException) and not issubclass(Terminated, Exception)


SIGTERM_CHILD = """
    import sys, time
    from medflow.tracking.client import Tracker
    from medflow.tracking.runs import tracked_run
    tracker = Tracker(sys.argv[1])
    with tracked_run(tracker, "signals", "victim", {}) as run_id:
        tracker.log_metrics(run_id, {"loss": 2.0}, step=0)
        print(run_id, flush=True)
        time.sleep(120)
"""


def test_sigterm_marks_run_killed(tracker: Tracker, spawn: Callable[..., Any]) -> None:
    proc = spawn(SIGTERM_CHILD, tracker.tracking_uri)
    run_id = read_line(proc, timeout=WAIT_S)
    assert tracker.get_run(run_id).info.status == "RUNNING"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode != 0, stderr
    assert "Terminated" in stderr
    run = tracker.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "Terminated: received SIGTERM"
    assert run.data.metrics["loss"] == 2.0


SIGTERM_IN_STORE_CALL_CHILD = """
    import sys, time
    from medflow.tracking.client import Tracker
    from medflow.tracking.runs import tracked_run
    tracker = Tracker(sys.argv[1])

    def slow_write(run_id):
        print(run_id, flush=True)  # the parent sends SIGTERM now, mid-call
        time.sleep(1.0)
        tracker.client.set_tag(run_id, "written_after_signal", "yes")

    with tracked_run(tracker, "signals", "victim", {}) as run_id:
        tracker.call(slow_write, run_id)
        tracker.set_tags(run_id, {"after_the_call": "yes"})  # never reached
"""


def test_sigterm_during_a_store_call_takes_effect_when_the_call_returns(
    tracker: Tracker, spawn: Callable[..., Any]
) -> None:
    proc = spawn(SIGTERM_IN_STORE_CALL_CHILD, tracker.tracking_uri)
    run_id = read_line(proc, timeout=WAIT_S)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode != 0, stderr
    run = tracker.get_run(run_id)
    assert run.data.tags["written_after_signal"] == "yes"  # the call was not cut short
    assert "after_the_call" not in run.data.tags  # the next statement was
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "Terminated: received SIGTERM"


# --------------------------------------------------------------------------- models


def test_torch_model_round_trip(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.models
    import mlflow.pytorch
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    example = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    with tracked_run(tracker, "models", "r", {}) as run_id:
        uri = log_torch_model(tracker, run_id, model, example)
    assert uri == f"runs:/{run_id}/model"

    batch = torch.rand(17, 4)  # a different batch size than the example
    expected = model(batch).detach()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    loaded = mlflow.pytorch.load_model(uri)
    torch.testing.assert_close(loaded(batch), expected)
    torch.testing.assert_close(load_torch_model(tracker, run_id)(batch), expected)

    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    assert info.signature.outputs.inputs[0].shape == (-1, 3)
    outputs = tracker.get_run(run_id).outputs.model_outputs
    assert len(outputs) == 1
    assert tracker.client.get_logged_model(outputs[0].model_id).status == "READY"


# --------------------------------------------------------------------------- concurrency

WRITER_CHILD = """
    import sys, time
    from pathlib import Path
    from medflow.tracking.client import Tracker
    from medflow.tracking.runs import tracked_run
    uri, artifacts, go, worker = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    tracker = Tracker(uri, artifacts)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.01)
    for r in range(10):
        with tracked_run(tracker, "concurrent", f"w{worker}-r{r}", {"worker": worker}) as run_id:
            tracker.log_params(run_id, {"worker": worker, "run": r})
            for step in range(5):
                tracker.log_metrics(run_id, {"loss": 1.0 / (step + 1), "acc": step}, step)
"""


def test_concurrent_writers_share_one_sqlite_store(
    tracker: Tracker, tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    uri = tracker.tracking_uri
    go = tmp_path / "go"
    procs = [spawn(WRITER_CHILD, uri, str(tmp_path / "art"), str(go), str(w)) for w in range(4)]
    for proc in procs:
        assert read_line(proc, timeout=WAIT_S * 2) == "ready"
    go.touch()
    for proc in procs:
        _, stderr = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0, stderr

    runs = find_runs(tracker, "concurrent")
    assert len(runs) == 40
    assert len({r.info.run_name for r in runs}) == 40
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        history = tracker.client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
        assert run.data.metrics["acc"] == 4.0
        assert run.data.params["worker"] == run.data.tags["worker"]


def test_store_init_lock_makes_openers_wait_for_a_migration(tmp_path: Path) -> None:
    db = tmp_path / "new" / "mlflow.db"
    opened = threading.Event()

    def open_existing() -> None:
        with store_init_lock(db):  # file exists by now: shared lock, waits for the creator
            opened.set()

    with store_init_lock(db):  # fresh file: exclusive lock, as while migrating
        db.write_bytes(b"partially migrated")
        opener = threading.Thread(target=open_existing)
        opener.start()
        assert not opened.wait(timeout=0.5)
    assert opened.wait(timeout=WAIT_S)
    opener.join(timeout=WAIT_S)


def test_a_run_id_the_store_does_not_hold_is_one_line_naming_the_store(tracker):
    from medflow.errors import MedflowError

    missing = "ab" * 16
    with pytest.raises(MedflowError) as err:
        tracker.get_run(missing)
    message = str(err.value)
    assert message.startswith(f"MLflow run {missing} is not in the tracking store sqlite:///")
    assert "\n" not in message
    run_id = tracker.start_run("exp", "run", {})
    assert tracker.get_run(run_id).info.run_id == run_id  # present runs are unaffected
