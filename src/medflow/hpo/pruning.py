"""The median rule of a reproducible sweep: a trial is judged only against earlier generations.

Optuna's MedianPruner compares with every trial complete *now*, which depends on how the
workers' timing fell. This one applies the same rule (the trial's best value so far against the
median, at the same epoch, of complete trials) over the trials of earlier generations only,
which a generation waits for (medflow.hpo.claims), so the decision is the same on every rerun.
All trials of a sweep train for ``sweep.epochs``: the comparison is always within one budget.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from medflow.hpo.design import GENERATION_ATTR


class GenerationMedianPruner(BasePruner):
    """MedianPruner's rule (``n_startup_trials``, ``n_warmup_steps``) over earlier generations."""

    def __init__(self, n_startup_trials: int, n_warmup_steps: int) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        generation = trial.user_attrs.get(GENERATION_ATTR)
        if step is None or step < self.n_warmup_steps or generation is None:
            return False
        earlier = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(GENERATION_ATTR, math.inf) < generation
        ]
        if len(earlier) < self.n_startup_trials:
            return False
        at_step = [t.intermediate_values[step] for t in earlier if step in t.intermediate_values]
        at_step = [v for v in at_step if not math.isnan(v)]
        if not at_step:
            return False
        seen = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
        if not seen:
            return True  # only NaN so far: as MedianPruner does
        median = float(np.median(at_step))
        if study.direction == StudyDirection.MAXIMIZE:
            return max(seen) < median
        return min(seen) > median
