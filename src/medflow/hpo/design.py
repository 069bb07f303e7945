"""What a sweep's trials are, fixed by the config before any trial runs: the budget, each
trial slot's generation and, for the factorial design, its cell and parameters.

A *slot* is a trial's place in the design (0 .. n_trials-1); a retry keeps its slot. The
factorial design makes every combination of the listed categorical choices a cell and gives
each cell ``trials_per_cell`` slots. Their continuous parameters (lr, weight decay) are scrambled
Halton points on the log range, seeded by ``sweep.seed``: quasi-random points cover a range more
evenly than random ones for a handful of trials, and unlike TPE they need no earlier results,
so slot -> parameters is known up front. Every cell gets the same points, so two cells differ
only by their categorical choices (a paired comparison). Halton rather than Sobol: Sobol's
balance needs a power-of-two number of points, a cell has any number.

Slots are ordered replicate by replicate (every cell once, then every cell again), the cells of
each replicate in a seeded random order, so that early generations, which later trials are
pruned against, mix optimizers and activations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from medflow.config.schema import Dimension, search_dimensions
from medflow.hpo.space import SearchSpace, SweepConfig

__all__ = ["SweepPlan", "categorical_dimensions", "cell_key"]

# Trial user attributes that place a trial in the design.
SLOT_ATTR = "slot"
GENERATION_ATTR = "generation"


def categorical_dimensions(space: SearchSpace) -> tuple[Dimension, ...]:
    """The listed categorical dimensions (optimizer, activation, freeze, ...), schema order."""
    return tuple(
        d for d in search_dimensions() if d.sample == "categorical" and getattr(space, d.key)
    )


def continuous_dimensions(space: SearchSpace) -> tuple[Dimension, ...]:
    return tuple(
        d for d in search_dimensions() if d.sample == "log_float" and getattr(space, d.key)
    )


def cell_key(params: Mapping[str, Any], dims: tuple[Dimension, ...]) -> str:
    """A cell's name, e.g. ``adam/relu/finetune`` (categorical values in schema order)."""
    return "/".join(str(params.get(d.param)) for d in dims)


@dataclass(frozen=True)
class SweepPlan:
    """The config's sweep, as trial slots; light (numpy, and SciPy's Halton sequence when used)."""

    cfg: SweepConfig
    space: SearchSpace | None  # None: free-running TPE only, which needs no plan of its own

    @property
    def factorial(self) -> bool:
        return self.cfg.design == "factorial"

    @property
    def planned(self) -> bool:
        """Whether trials take slots (factorial or reproducible); else today's free TPE."""
        return self.factorial or self.cfg.reproducible

    @cached_property
    def cells(self) -> tuple[dict[str, Any], ...]:
        """Every combination of the listed categorical choices, in product order."""
        dims = categorical_dimensions(self._space())
        choices = [getattr(self.space, d.key) for d in dims]
        return tuple(
            {d.param: v for d, v in zip(dims, combo, strict=True)}
            for combo in itertools.product(*choices)
        )

    @property
    def n_trials(self) -> int:
        """The budget: cells x trials_per_cell (factorial) or ``sweep.n_trials`` (tpe)."""
        if self.factorial:
            return len(self.cells) * self.cfg.trials_per_cell
        return self.cfg.n_trials

    def generation(self, slot: int) -> int:
        return slot // self.cfg.generation_size

    @cached_property
    def _points(self) -> tuple[dict[str, float], ...]:
        """One scrambled Halton point per replicate, mapped onto each log range."""
        dims = continuous_dimensions(self._space())
        n = self.cfg.trials_per_cell
        if not dims:
            return tuple({} for _ in range(n))
        from scipy.stats import qmc  # here: a worker's start imports no SciPy

        unit = qmc.Halton(d=len(dims), scramble=True, seed=self.cfg.seed).random(n)
        points = []
        for row in unit:
            point = {}
            for d, u in zip(dims, row, strict=True):
                low, high = getattr(self.space, d.key)
                value = math.exp(math.log(low) + float(u) * (math.log(high) - math.log(low)))
                point[d.param] = min(max(value, low), high)  # exp/log rounding at the ends
            points.append(point)
        return tuple(points)

    def _cell_order(self, replicate: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, replicate]).permutation(len(self.cells))

    def fixed_params(self, slot: int) -> dict[str, Any] | None:
        """The factorial slot's parameters in schema order (None for TPE: sampled later)."""
        if not self.factorial:
            return None
        replicate, index = divmod(slot, len(self.cells))
        cell = self.cells[int(self._cell_order(replicate)[index])]
        values = {**cell, **self._points[replicate]}
        return {d.param: values[d.param] for d in search_dimensions() if d.param in values}

    def _space(self) -> SearchSpace:
        if self.space is None:
            raise ValueError("this sweep plan needs the search space")
        return self.space
