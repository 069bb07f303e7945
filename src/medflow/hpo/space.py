"""What a sweep runs (SweepConfig) and searches (SearchSpace), and how a trial samples it.

The schema's ``$defs/search_space`` annotates each dimension (medflow.config.schema.Dimension):
the parameter's name, how it is sampled and which run-config field it sets. ``suggest`` and
``run_overrides`` follow those annotations, so a new dimension is a schema entry plus its
SearchSpace field. Light: no torch, no MLflow (the sweep's init and best jobs import it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medflow.config.schema import properties, search_dimensions
from medflow.config.section import Section
from medflow.ml.monitor import direction
from medflow.runtime.digest import config_hash

if TYPE_CHECKING:
    import optuna

    from medflow.config.types import StudyConfig

__all__ = ["SearchSpace", "SweepConfig", "run_overrides", "search_space", "suggest", "sweep_config"]


@dataclass(frozen=True)
class SweepConfig(Section):
    """How a sweep runs (not what it searches: see :class:`SearchSpace`): the study's
    ``sweep`` section, plus the monitored metric and its direction from ``train.monitor``."""

    SCHEMA: ClassVar[str] = "sweep"
    SKIPPED: ClassVar[frozenset[str]] = frozenset({"space"})

    n_trials: int
    workers: int
    seed: int
    pruner: str
    storage: str | None
    metric: str
    direction: str
    epochs: int
    heartbeat_grace_s: float
    max_retry: int
    design: str
    trials_per_cell: int
    reproducible: bool
    generation_size: int


# JSON items type -> Python type, so that e.g. a batch size of 16.0 from YAML becomes 16.
_CASTS: dict[str, Callable[[Any], Any]] = {"integer": int, "number": float}


def _normalised(key: str, value: Sequence[Any]) -> tuple[Any, ...]:
    cast = _CASTS.get(properties(SearchSpace.SCHEMA)[key].get("items", {}).get("type"))
    return tuple(cast(v) for v in value) if cast else tuple(value)


@dataclass(frozen=True)
class SearchSpace(Section):
    """What a trial samples; ``None`` dimensions are not sampled (the configured value stays).

    One field per ``$defs/search_space`` key: choices for ``categorical`` dimensions,
    ``(low, high)`` for ``log_float`` ones.
    """

    SCHEMA: ClassVar[str] = "search_space"

    optimizers: tuple[str, ...]
    activations: tuple[str, ...]
    lr: tuple[float, float]
    weight_decay: tuple[float, float] | None
    batch_sizes: tuple[int, ...] | None
    freeze: tuple[str, ...] | None
    class_weight: tuple[str, ...] | None
    sampler: tuple[str, ...] | None

    def __post_init__(self) -> None:
        # Lists (from YAML/JSON) as tuples, so that the dataclass stays hashable and comparable.
        for dim in search_dimensions():
            value = getattr(self, dim.key)
            if value is not None:
                object.__setattr__(self, dim.key, _normalised(dim.key, value))


def _categorical(trial: optuna.Trial, name: str, choices: tuple[Any, ...]) -> Any:
    return trial.suggest_categorical(name, choices)


def _log_float(trial: optuna.Trial, name: str, bounds: tuple[float, float]) -> float:
    return trial.suggest_float(name, *bounds, log=True)


# How each ``x-sample`` kind of dimension is drawn.
SAMPLERS: dict[str, Callable[[optuna.Trial, str, Any], Any]] = {
    "categorical": _categorical,
    "log_float": _log_float,
}


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample every dimension the space lists, in schema order (TPE's reproducibility
    depends on the order); keys are the parameter names (optimizer, lr, batch_size, ...)."""
    params: dict[str, Any] = {}
    for dim in search_dimensions():
        values = getattr(space, dim.key)
        if values is not None:
            params[dim.param] = SAMPLERS[dim.sample](trial, dim.param, values)
    return params


def run_overrides(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The run-config fields that sampled ``params`` set, by section, e.g.
    ``{"optim": {"name": "adam", "lr": 0.01}}``; parameters that set no field (freeze) and
    dimensions not sampled are left out."""
    sections: dict[str, dict[str, Any]] = {}
    for dim in search_dimensions():
        if dim.sets is not None and dim.param in params:
            section, field = dim.sets.split(".")
            sections.setdefault(section, {})[field] = params[dim.param]
    return sections


def sweep_config(study: StudyConfig) -> SweepConfig:
    """The study's sweep settings, judged by its ``train.monitor``."""
    monitor = study.train["monitor"]
    return SweepConfig.from_section(study.sweep, metric=monitor, direction=direction(monitor))


def search_space(study: StudyConfig) -> SearchSpace:
    return SearchSpace.from_section(study.sweep["space"])


def optuna_study_name(study: StudyConfig, target_hash: str) -> str:
    """The Optuna study's name: the medflow study plus a digest of everything its trials
    depend on (search space, budget, fixed model/optim/train settings, pretraining, the
    target data's content hash). Change any of them and the sweep starts a new study in
    the same journal instead of reusing trials run on other inputs."""
    inputs = {
        "target": target_hash,
        "pretrain": dataclasses.asdict(study.pretrain) if study.pretrain else None,
        **{key: getattr(study, key) for key in ("model", "optim", "train", "sweep")},
    }
    return f"{study.name}-{config_hash(inputs)[:12]}"
