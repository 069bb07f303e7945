"""cells.json: the sweep per cell (every combination of the listed categorical choices) and a
ranking of each categorical factor (optimizers, activations, ...) with intervals.

A trial's value here is the best validation value it reached: a complete trial's value (the
objective returns its best epoch), a pruned trial's best value before it was stopped (biased
against it; the cell records how many of its trials were pruned). A cell's best is the best of
its trials; its spread their min, max and standard deviation.

The ranking of a factor's level (e.g. adam) is the mean of the best values of the cells holding
it, i.e. the marginal mean over the other factors' levels, with a 95% t-interval over those
cells (clipped to the metric's range): it says how consistently the level does across the
other choices, not the noise of one training run (the refine stage's seeds measure that).

Beside it, each level's difference from the top-ranked level, paired by the other factors'
levels (adagrad/relu against adam/relu, adagrad/tanh against adam/tanh, ...), with a 95%
t-interval over those pairs: pairing removes what the other choices add to every level alike,
so "how much worse is adagrad than adam here" gets a much narrower interval than the two
marginal means would suggest.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from medflow.hpo.design import SweepPlan, categorical_dimensions
from medflow.stats.intervals import aggregate_over_seeds, metric_bounds

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


def _interval(
    values: list[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    spread = aggregate_over_seeds(values, 1 - LEVEL, bounds)
    return spread["ci_low"], spread["ci_high"]


def _others(cell: dict[str, Any], param: str, params: Sequence[str]) -> tuple[Any, ...]:
    """The cell's levels of every factor but ``param``: what pairs it with other levels."""
    return tuple(cell[k] for k in params if k != param)


def _paired_gaps(
    cells: list[dict[str, Any]], param: str, params: Sequence[str], top: Any
) -> dict[Any, dict[str, Any]]:
    """level -> its cells' best minus the top level's best in the matching cell, averaged
    over the pairs both have, with a t-interval over the pairs."""
    top_best = {_others(c, param, params): c["best"] for c in cells if c[param] == top}
    gaps: dict[Any, list[float]] = {}
    for c in cells:
        matched = top_best.get(_others(c, param, params))
        if c[param] != top and c["best"] is not None and matched is not None:
            gaps.setdefault(c[param], []).append(c["best"] - matched)
    out = {}
    for level, diffs in gaps.items():
        low, high = _interval(diffs)
        out[level] = {"gap": statistics.fmean(diffs), "gap_low": low, "gap_high": high}
    return out


def _ranking(
    cells: list[dict[str, Any]], param: str, params: Sequence[str], metric: str, maximize: bool
) -> list[dict[str, Any]]:
    levels = dict.fromkeys(c[param] for c in cells)
    bounds = metric_bounds(metric)
    rows = []
    for level in levels:
        bests = [c["best"] for c in cells if c[param] == level and c["best"] is not None]
        low, high = _interval(bests, bounds)
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
    gaps = _paired_gaps(cells, param, params, rows[0]["level"]) if rows else {}
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row.update(gaps.get(row["level"], {"gap": None, "gap_low": None, "gap_high": None}))
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
        "gap_interval": (
            f"{LEVEL:.0%} t-interval of the difference from the top-ranked level, paired by "
            "the other factors' levels"
        ),
        "cells": cells,
        # Factors with one level (e.g. a single activation) have nothing to rank.
        "rankings": {
            d.param: _ranking(cells, d.param, params, metric, maximize)
            for d in dims
            if len(getattr(plan.space, d.key)) > 1
        },
    }
