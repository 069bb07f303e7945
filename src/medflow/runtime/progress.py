"""Progress a person can follow: epochs within a run, trials within a sweep.

Progress is emitted as ordinary log records on the ``medflow.progress`` logger, each
carrying a :class:`ProgressEvent`. Where they go is the CLI's logging set-up:

* a log file gets every record: one line per epoch (or finished trial), never a bar;
* an interactive terminal (no ``--log``) gets a tqdm bar per task, with the latest
  metrics and tqdm's ETA, via :class:`TqdmProgressHandler`;
* any other terminal (a Snakemake job, CI) gets at most one line per task every
  ``interval_s`` seconds plus the last, via :class:`ThrottledProgressFilter`: parallel
  jobs share that terminal, so bars would garble it and per-epoch lines would flood it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tqdm import tqdm

PROGRESS_LOGGER = "medflow.progress"
_SHOWN_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_auc", "val_mse")


@dataclass(frozen=True)
class ProgressEvent:
    task: str  # e.g. "pretrain relu", "sweep digits"
    done: int
    total: int
    unit: str  # "epoch" or "trial"
    summary: str  # the metrics, already formatted
    final: bool = False


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_metrics(metrics: Mapping[str, float]) -> str:
    shown = [k for k in _SHOWN_METRICS if k in metrics]
    return " ".join(f"{k}={metrics[k]:.4g}" for k in shown)


@dataclass
class _Rate:
    """Mean seconds per unit since ``started``; the ETA of the rest."""

    started: float = field(default_factory=time.monotonic)

    def eta(self, done: int, total: int) -> float | None:
        if done <= 0:
            return None
        return (time.monotonic() - self.started) / done * max(total - done, 0)


class EpochProgress:
    """An ``EpochTracker`` for ``train()``: one progress record per epoch."""

    def __init__(self, task: str, total_epochs: int, *, start_epoch: int = 0) -> None:
        self.task = task
        self.total = total_epochs
        self._first = start_epoch  # a resumed run's ETA counts only the epochs run now
        self._rate = _Rate()
        self._log = logging.getLogger(PROGRESS_LOGGER)
        self._last = 0

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self._last == 0 and epoch > 1:
            self._first = epoch - 1
        self._last = epoch
        eta = self._rate.eta(epoch - self._first, self.total - self._first)
        seconds = metrics.get("epoch_time_s")
        timing = f" {seconds:.2f}s/epoch" if seconds is not None else ""
        summary = f"{format_metrics(metrics)}{timing} ETA {format_eta(eta)}"
        self._emit(epoch, summary, final=epoch >= self.total)

    def finish(self, reason: str) -> None:
        """Close the task early (early stopping, divergence, pruning)."""
        if 0 < self._last < self.total:
            self._emit(self._last, reason, final=True)

    def _emit(self, done: int, summary: str, *, final: bool) -> None:
        event = ProgressEvent(self.task, done, self.total, "epoch", summary, final)
        self._log.info(
            "%s: epoch %d/%d %s", self.task, done, self.total, summary, extra={"progress": event}
        )


class TrialProgress:
    """Finished trials of a whole sweep (all workers), as seen by one worker."""

    def __init__(self, task: str, total_trials: int, workers: int) -> None:
        self.task = task
        self.total = total_trials
        self.workers = max(workers, 1)
        self._log = logging.getLogger(PROGRESS_LOGGER)

    def update(self, finished: int, best: float | None, mean_trial_s: float | None) -> None:
        remaining = max(self.total - finished, 0)
        eta = None if mean_trial_s is None else mean_trial_s * remaining / self.workers
        best_text = "-" if best is None else f"{best:.4g}"
        summary = f"best={best_text} ETA {format_eta(eta)}"
        event = ProgressEvent(
            self.task, finished, self.total, "trial", summary, final=finished >= self.total
        )
        self._log.info(
            "%s: %d/%d trials finished %s",
            self.task,
            finished,
            self.total,
            summary,
            extra={"progress": event},
        )


def event_of(record: logging.LogRecord) -> ProgressEvent | None:
    event = getattr(record, "progress", None)
    return event if isinstance(event, ProgressEvent) else None


class ThrottledProgressFilter(logging.Filter):
    """Lets progress records of a task through at most every ``interval_s`` seconds
    (plus the first and the last); other records pass if at or above ``min_level``."""

    def __init__(self, interval_s: float = 30.0, min_level: int = logging.WARNING) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.min_level = min_level
        self._last_shown: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        event = event_of(record)
        if event is None:
            return record.levelno >= self.min_level
        now = time.monotonic()
        last = self._last_shown.get(event.task)
        if event.final or last is None or now - last >= self.interval_s:
            self._last_shown[event.task] = now
            return True
        return False


class TqdmProgressHandler(logging.Handler):
    """Draws progress records as tqdm bars; writes other records above the bars."""

    def __init__(self, stream, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.stream = stream
        self._bars: dict[str, tqdm] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = event_of(record)
            if event is None:
                tqdm.write(self.format(record), file=self.stream)
                return
            bar = self._bars.get(event.task)
            if bar is None:
                bar = tqdm(
                    total=event.total,
                    desc=event.task,
                    unit=event.unit,
                    file=self.stream,
                    dynamic_ncols=True,
                    initial=max(event.done - 1, 0),  # a resumed run starts where it was
                )
                self._bars[event.task] = bar
            bar.update(event.done - bar.n)
            bar.set_postfix_str(event.summary.split(" ETA ")[0], refresh=True)
            if event.final:
                bar.close()
                del self._bars[event.task]
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        super().close()
