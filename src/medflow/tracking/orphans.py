"""Runs a killed job left RUNNING (SIGKILL, out of memory, a lost node): when the job runs
again, the runs that wrote to the same checkpoint from a process that is now gone are
ended KILLED, so the MLflow UI never shows a run as RUNNING for ever.

A run is matched by the checkpoint path it trained into and judged by the process that
started it (host, boot and pid namespace, pid, start time): a run of a live process, or of
a process on another machine, is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from medflow.runtime.liveness import ProcessIdentity, gone_pid
from medflow.tracking.client import Tracker, find_runs
from medflow.tracking.runs import FAILURE_REASON_TAG

CHECKPOINT_TAG = "medflow.checkpoint"
_PROCESS_TAG_PREFIX = "medflow."

_log = logging.getLogger(__name__)


def owner_tags(checkpoint: str, me: ProcessIdentity) -> dict[str, str]:
    """Tags that let a later job recognise this run as its own, once this process is gone."""
    process = {f"{_PROCESS_TAG_PREFIX}{k}": str(v) for k, v in me.attrs().items()}
    return {CHECKPOINT_TAG: checkpoint, **process}


def _process_attrs(tags: Mapping[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(_PROCESS_TAG_PREFIX): v
        for k, v in tags.items()
        if k.startswith(f"{_PROCESS_TAG_PREFIX}worker_")
    }


def end_runs_of_dead_processes(
    tracker: Tracker, experiment: str, checkpoint: str, me: ProcessIdentity
) -> list[str]:
    """End KILLED every RUNNING run of ``checkpoint`` whose process is gone; their ids."""
    quoted = checkpoint.replace("'", "\\'")
    runs = find_runs(
        tracker,
        experiment,
        f"tags.`{CHECKPOINT_TAG}` = '{quoted}' and attributes.status = 'RUNNING'",
    )
    ended = []
    for run in runs:
        pid = gone_pid(_process_attrs(run.data.tags), me)
        if pid is None:
            continue
        _log.warning(
            "ending run %s KILLED: its process %d died before ending it", run.info.run_id, pid
        )
        reason = f"process {pid} died (killed) before ending the run; the job was run again"
        tracker.set_tags(run.info.run_id, {FAILURE_REASON_TAG: reason})
        tracker.end_run(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    return ended
