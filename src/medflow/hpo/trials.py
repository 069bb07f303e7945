"""A finished sweep's records: trials.csv (one row per trial) and best_params.json.

Light: no torch, no MLflow (the sweep's best job imports it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from medflow.errors import MedflowError
from medflow.hpo.cells import cell_summary
from medflow.hpo.design import GENERATION_ATTR, SLOT_ATTR, SweepPlan
from medflow.hpo.space import SearchSpace, SweepConfig
from medflow.hpo.study import open_study
from medflow.layout import Layout
from medflow.runtime.io import atomic_write_bytes, write_json_atomic


def duration_s(trial: FrozenTrial) -> float | None:
    return None if trial.duration is None else round(trial.duration.total_seconds(), 3)


def trials_csv(trials: Sequence[FrozenTrial]) -> bytes:
    """One row per trial: state, value, every parameter, epochs run, duration, MLflow run."""
    names = sorted({name for t in trials for name in t.params})
    columns = [
        "number",
        "slot",
        "generation",
        "state",
        "value",
        *(f"param_{n}" for n in names),
        "epochs_run",
        "duration_s",
        "mlflow_run_id",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for t in trials:
        writer.writerow(
            {
                "number": t.number,
                # The trial's place in a planned sweep (a retry keeps it); empty when free.
                "slot": t.user_attrs.get(SLOT_ATTR),
                "generation": t.user_attrs.get(GENERATION_ATTR),
                "state": t.state.name,
                "value": t.value,
                **{f"param_{n}": t.params.get(n) for n in names},
                # Steps are epochs counted from 1, so the last step is the epochs run.
                "epochs_run": t.last_step,
                "duration_s": duration_s(t),
                "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            }
        )
    return buffer.getvalue().encode("utf-8")


def best_trial(trials: Sequence[FrozenTrial], direction: str) -> FrozenTrial:
    """The best complete trial; ties go to the lowest slot (else number), so that a rerun
    whose retries renumbered the trials picks the same one."""
    sign = -1 if direction == "maximize" else 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return min(complete, key=lambda t: (sign * t.value, t.user_attrs.get(SLOT_ATTR, t.number)))


def summarize(
    cfg: SweepConfig,
    sweep_dir: Path,
    study_name: str,
    out_dir: Path,
    space: SearchSpace | None = None,
) -> dict[str, Any]:
    """Write best_params.json and trials.csv (and, given the ``space``, cells.json) to
    ``out_dir``; return the best_params payload."""
    study = open_study(cfg, Path(sweep_dir), study_name, create=False)
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    if not counts[TrialState.COMPLETE]:
        raise MedflowError(
            f"sweep {study_name}: no trial completed ({counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.FAIL]} failed); nothing to select"
        )
    best = best_trial(trials, cfg.direction)
    summary = {
        "metric": cfg.metric,
        "direction": cfg.direction,
        "value": best.value,
        "number": best.number,
        "slot": best.user_attrs.get(SLOT_ATTR),
        "params": best.params,
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "n_complete": counts[TrialState.COMPLETE],
        "n_pruned": counts[TrialState.PRUNED],
        "n_failed": counts[TrialState.FAIL],
    }
    write_json_atomic(summary, Layout.best_params_file(out_dir))
    if space is not None:
        cells = cell_summary(SweepPlan(cfg, space), trials, cfg.metric)
        write_json_atomic(cells, Layout.cells_file(out_dir))
    atomic_write_bytes(Layout.trials_file(out_dir), trials_csv(trials))
    return summary
