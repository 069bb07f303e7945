"""Slots and generations in the study: which slot a claim takes next, whether its generation
may start, and the parameters of a TPE slot in a reproducible sweep.

A reproducible sweep is batch-synchronous: slot ``s`` belongs to generation
``s // generation_size`` and is started only once every slot of earlier generations has
finished (complete or pruned). Its parameters are then a function of those trials alone: TPE,
seeded by ``(seed, slot)``, is asked in an in-memory study that holds exactly the earlier
generations' finished trials in slot order (Optuna's ask-and-tell), never the running ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from medflow.hpo.design import SLOT_ATTR, SweepPlan
from medflow.hpo.space import suggest
from medflow.hpo.study import FINISHED, claim_sampler

# A slot is taken while one of its trials is in one of these states (a FAIL whose retries
# ran out frees its slot again, so the design is still filled exactly).
_TAKING = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)


def slot_of(trial: FrozenTrial) -> int | None:
    slot = trial.user_attrs.get(SLOT_ATTR)
    return None if slot is None else int(slot)


def next_slot(plan: SweepPlan, trials: Sequence[FrozenTrial]) -> int | None:
    """The lowest slot no trial takes, or None when every slot is taken."""
    taken = {slot_of(t) for t in trials if t.state in _TAKING}
    return next((s for s in range(plan.n_trials) if s not in taken), None)


def finished_before(plan: SweepPlan, trials: Sequence[FrozenTrial], slot: int) -> list[FrozenTrial]:
    """The finished trials of the generations before ``slot``'s, in slot order."""
    first = plan.generation(slot) * plan.cfg.generation_size
    done = [t for t in trials if t.state in FINISHED and _slot_or_inf(t) < first]
    return sorted(done, key=_slot_or_inf)


def _slot_or_inf(trial: FrozenTrial) -> float:
    slot = slot_of(trial)
    return math.inf if slot is None else slot


def generation_ready(plan: SweepPlan, trials: Sequence[FrozenTrial], slot: int) -> bool:
    """Whether every slot of the generations before ``slot``'s has finished."""
    first = plan.generation(slot) * plan.cfg.generation_size
    finished = {slot_of(t) for t in trials if t.state in FINISHED}
    return all(s in finished for s in range(first))


def tpe_params(
    plan: SweepPlan, trials: Sequence[FrozenTrial], slot: int, direction: Any
) -> dict[str, Any]:
    """TPE's parameters for ``slot``, from the earlier generations' finished trials only."""
    if plan.space is None:
        raise ValueError("a reproducible TPE sweep needs the search space")
    side = optuna.create_study(direction=direction, sampler=claim_sampler(plan.cfg.seed, slot))
    side.add_trials(finished_before(plan, trials, slot))
    return suggest(side.ask(), plan.space)
