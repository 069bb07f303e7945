"""cells.json: the sweep per cell (every combination of the listed categorical choices) and a
ranking of each categorical factor (optimizers, activations, ...) with intervals.

A trial's value here is the best validation value it reached: a complete trial's value (the
objective returns its best epoch), a pruned trial's best value before it was stopped (biased
against it; the cell records how many of its trials were pruned). A cell's best is the best of
its trials; its spread their min, max and standard deviation.

The ranking of a factor's level (e.g. adam) is the mean of the best values of the cells holding
it, i.e. the marginal mean over the other factors' levels, with a 95% t-interval over those
cells: it says how consistently the level does across the other choices, not the noise of one
training run (the refine stage's seeds measure that).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from medflow.hpo.design import SweepPlan, categorical_dimensions

LEVEL = 0.95


def reached(trial: FrozenTrial, maximize: bool) -> float | None:
    """The best validation value a finished trial reached (see the module docstring)."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state != TrialState.PRUNED:
        return None
    seen = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
    if not seen:
        return None
    return max(seen) if maximize else min(seen)


def _spread(values: list[float], maximize: bool) -> dict[str, Any]:
    if not values:
        return {"best": None, "min": None, "max": None, "sd": None}
    return {
        "best": max(values) if maximize else min(values),
        "min": min(values),
        "max": max(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
    }


def _interval(values: list[float]) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    sem = stats.sem(values)
    if sem == 0:
        return float(values[0]), float(values[0])
    low, high = stats.t.interval(LEVEL, len(values) - 1, loc=statistics.fmean(values), scale=sem)
    return float(low), float(high)


def _ranking(cells: list[dict[str, Any]], param: str, maximize: bool) -> list[dict[str, Any]]:
    levels = dict.fromkeys(c[param] for c in cells)
    rows = []
    for level in levels:
        bests = [c["best"] for c in cells if c[param] == level and c["best"] is not None]
        low, high = _interval(bests)
        rows.append(
            {
                "level": level,
                "mean": statistics.fmean(bests) if bests else None,
                "low": low,
                "high": high,
                "n_cells": len(bests),
            }
        )
    rows.sort(key=lambda r: (r["mean"] is None, -(r["mean"] or 0) if maximize else r["mean"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def cell_summary(plan: SweepPlan, trials: Sequence[FrozenTrial], metric: str) -> dict[str, Any]:
    """Every cell of the plan's space (also the ones no trial tried) and the rankings."""
    maximize = plan.cfg.direction == "maximize"
    dims = categorical_dimensions(plan.space) if plan.space is not None else ()
    params = [d.param for d in dims]
    cells = []
    for cell in plan.cells if dims else ():
        mine = [t for t in trials if all(t.params.get(k) == v for k, v in cell.items())]
        values = [v for t in mine if (v := reached(t, maximize)) is not None]
        cells.append(
            {
                **cell,
                "n_trials": sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in mine),
                "n_complete": sum(t.state == TrialState.COMPLETE for t in mine),
                "n_pruned": sum(t.state == TrialState.PRUNED for t in mine),
                **_spread(values, maximize),
                "values": values,
            }
        )
    return {
        "metric": metric,
        "direction": plan.cfg.direction,
        "design": plan.cfg.design,
        "reproducible": plan.cfg.reproducible,
        "dimensions": params,
        "interval": f"{LEVEL:.0%} t-interval over cells of the marginal mean of cell bests",
        "cells": cells,
        # Factors with one level (e.g. a single activation) have nothing to rank.
        "rankings": {
            d.param: _ranking(cells, d.param, maximize)
            for d in dims
            if len(getattr(plan.space, d.key)) > 1
        },
    }
