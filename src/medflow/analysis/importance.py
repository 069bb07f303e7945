"""Hyper-parameter importances of a finished Optuna study (fANOVA, fixed seed)."""

from __future__ import annotations

from typing import Any

import optuna

FANOVA_SEED = 0


def fanova_importances(study: optuna.Study) -> dict[str, Any]:
    """``{"importances": {param: fraction}, "n_complete": n, "seed": 0}`` (largest first),
    or ``{"note": why not}`` when fANOVA cannot run on the study."""
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=FANOVA_SEED)
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        return {"note": f"Parameter importances not available: {exc}"}
    if not importances:
        return {"note": "Parameter importances not available: no varying parameter."}
    n_complete = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    return {
        "importances": {k: float(v) for k, v in importances.items()},
        "n_complete": n_complete,
        "seed": FANOVA_SEED,
    }
