"""Progress: one line per epoch in log files, throttled lines or tqdm bars on terminals."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from medflow.cli import configure_logging
from medflow.runtime.progress import PROGRESS_LOGGER, ThrottledProgressFilter, TrialProgress
from medflow.tracking.client import Tracker
from medflow.tracking.training import tracked_training
from tests.test_experiment import _config, _tags
from tests.test_sweep import SPACE, Quadratic, init, sweep_cfg, work
from tests.test_train import blobs_data

EPOCH_LINE = re.compile(r"unit mlp: epoch (\d+)/4 train_loss=\S+ val_loss=\S+ val_accuracy=\S+")


@pytest.fixture
def terminal(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What reached sys.stderr (configure_logging binds to pytest's capture; conftest puts
    the root logger back afterwards)."""
    yield lambda: capsys.readouterr().err


def _train(tracker: Tracker) -> None:
    tracked_training(
        _config(), blobs_data(), tracker, experiment="unit", run_name="mlp", tags=_tags()
    )


def test_log_file_gets_one_line_per_epoch_and_the_terminal_only_first_and_last(
    tracker: Tracker, tmp_path: Path, terminal: Callable[[], str]
) -> None:
    log_file = tmp_path / "job.log"
    configure_logging(verbose=False, log_file=str(log_file))
    _train(tracker)
    logging.shutdown()

    lines = log_file.read_text().splitlines()
    epochs = [int(m.group(1)) for m in map(EPOCH_LINE.search, lines) if m]
    assert epochs == [1, 2, 3, 4]
    assert "ETA" in log_file.read_text()
    out = terminal()
    shown = [int(m.group(1)) for m in map(EPOCH_LINE.search, out.splitlines()) if m]
    assert shown == [1, 4]  # the 30 s throttle lets only the first and the final through
    assert "\r" not in out


def test_interactive_terminal_draws_one_bar_with_metrics(
    tracker: Tracker, terminal: Callable[[], str]
) -> None:
    configure_logging(verbose=False, log_file=None, interactive=True)
    _train(tracker)
    out = terminal()
    assert "unit mlp: 100%" in out and "4/4" in out
    assert "val_accuracy=" in out
    assert not EPOCH_LINE.search(out)  # the bar replaces per-epoch lines


def test_throttle_passes_warnings_first_and_final_events_only() -> None:
    records: list[logging.LogRecord] = []
    throttle = ThrottledProgressFilter(interval_s=3600)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(throttle)
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        progress = TrialProgress("sweep demo", total_trials=3, workers=1)
        for finished in (1, 2, 3):
            progress.update(finished, best=0.5, mean_trial_s=2.0)
        logger.info("an ordinary info line")
        logger.warning("a warning")
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert messages[0].startswith("sweep demo: 1/3 trials finished best=0.5 ETA 0:04")
    assert messages[1].startswith("sweep demo: 3/3 trials finished")
    assert messages[2:] == ["a warning"]


def test_sweep_worker_logs_study_progress_after_each_trial(
    tracker: Tracker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = sweep_cfg(n_trials=3, workers=1, epochs=2)
    init(cfg, tmp_path / "sweep", tracker)
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        work(cfg, tmp_path / "sweep", tracker, Quadratic(SPACE, epochs=2))
    lines = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert [line.split(" trials")[0] for line in lines] == [
        "sweep demo: 1/3",
        "sweep demo: 2/3",
        "sweep demo: 3/3",
    ]
    assert all("best=" in line and "ETA" in line for line in lines)
