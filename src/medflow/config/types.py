"""Typed views of the validated configuration: datasets, tracking, classics, studies.

Every value comes from the schema-validated config (medflow.config.schema fills the defaults);
the checks here are only those a JSON schema cannot express (references between keys
and sections, ranges that must run low to high).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from medflow.config.compat import check_study_inputs
from medflow.config.schema import search_dimensions
from medflow.config.section import Section
from medflow.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float
    test_fraction: float
    stratify: bool


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    source: str
    seed: int
    split: SplitConfig
    train_per_class: int | None
    options: dict[str, Any]

    @classmethod
    def from_validated(cls, name: str, section: Mapping[str, Any]) -> DatasetConfig:
        return cls(
            name=name,
            source=section["source"],
            seed=section["seed"],
            split=SplitConfig(**section["split"]),
            train_per_class=section["train_per_class"],
            options=dict(section["options"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seed": self.seed,
            "split": vars(self.split),
            "train_per_class": self.train_per_class,
            "options": self.options,
        }


@dataclass(frozen=True)
class TrackingConfig(Section):
    SCHEMA: ClassVar[str] = "tracking"

    uri: str | None
    experiment_prefix: str
    ui_url: str | None

    def experiment(self, study: str) -> str:
        return f"{self.experiment_prefix}/{study}"


@dataclass(frozen=True)
class ClassicsSettings:
    enabled: bool
    datasets: dict[str, str]  # gate name -> prepared dataset name
    params: dict[str, Any]  # medflow.ml.perceptron.ClassicsConfig fields

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ClassicsSettings:
        params = dict(section)
        return cls(enabled=params.pop("enabled"), datasets=params.pop("datasets"), params=params)


@dataclass(frozen=True)
class PretrainConfig(Section):
    SCHEMA: ClassVar[str] = "pretrain"

    dataset: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    patience: int
    seed: int


# The train settings pretraining takes from its study; the rest are pretrain's own.
PRETRAIN_LOOP_KEYS = ("device", "resident_max_mb", "amp", "augment")


@dataclass(frozen=True)
class StudyConfig:
    """One study. Component sections stay plain dicts here (validated by the schema) and
    become typed model/optim/train/sweep configs in the stages, so that reading the config
    (every Snakemake start) never imports torch."""

    name: str
    target: str
    pretrain: PretrainConfig | None
    model: dict[str, Any]
    optim: dict[str, Any]
    train: dict[str, Any]
    sweep: dict[str, Any]
    modes: tuple[str, ...]
    seeds: tuple[int, ...]
    bootstrap: int
    seeds_per_job: int | None
    evaluate: dict[str, Any]  # the evaluate section (operating_point, calibration, ece_bins)

    @classmethod
    def from_validated(cls, name: str, section: Mapping[str, Any]) -> StudyConfig:
        pretrain = section["pretrain"]
        return cls(
            name=name,
            target=section["target"],
            pretrain=PretrainConfig.from_section(pretrain) if pretrain else None,
            model=dict(section["model"]),
            optim=dict(section["optim"]),
            train=dict(section["train"]),
            sweep=dict(section["sweep"]),
            modes=tuple(section["refine"]["modes"]),
            seeds=tuple(section["refine"]["seeds"]),
            bootstrap=section["evaluate"]["bootstrap"],
            seeds_per_job=section["refine"]["seeds_per_job"],
            evaluate=dict(section["evaluate"]),
        )

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(self.sweep["space"]["activations"])

    def pretraining(self) -> dict[str, Any] | None:
        """Everything a pretrained backbone depends on besides its activation: two studies
        with equal pretraining train identical backbones."""
        if self.pretrain is None:
            return None
        return {
            "pretrain": dataclasses.asdict(self.pretrain),
            "model": {k: v for k, v in self.model.items() if k != "activation"},
            "loop": {k: self.train[k] for k in PRETRAIN_LOOP_KEYS},
        }

    @property
    def seed_batches(self) -> tuple[tuple[int, ...], ...]:
        """The seeds of each refine job, in config order (``refine.seeds_per_job`` per job)."""
        size = self.seeds_per_job or len(self.seeds)
        return tuple(self.seeds[i : i + size] for i in range(0, len(self.seeds), size))

    @property
    def workers(self) -> int:
        return int(self.sweep["workers"])

    def check(self, datasets: Mapping[str, DatasetConfig], source: str) -> None:
        where = f"{source}: studies.{self.name}"
        if self.target not in datasets:
            raise ConfigError(f"{where}.target: no dataset named '{self.target}'")
        if self.pretrain is not None and self.pretrain.dataset not in datasets:
            raise ConfigError(
                f"{where}.pretrain.dataset: no dataset named '{self.pretrain.dataset}'"
            )
        if self.pretrain is None:
            needs_backbone = [m for m in self.modes if m != "scratch"]
            if needs_backbone:
                raise ConfigError(
                    f"{where}.refine.modes: {', '.join(needs_backbone)} need a pretrained "
                    "backbone; set studies.<name>.pretrain or use modes: [scratch]"
                )
            if self.sweep["space"]["freeze"]:
                raise ConfigError(f"{where}.sweep.space.freeze: needs pretrain")
        weights, arch = self.model["weights"], self.model["arch"]
        if weights is not None and not arch.startswith("resnet"):
            raise ConfigError(
                f"{where}.model.weights: {weights!r} needs a torchvision arch, not {arch!r}"
            )
        self._check_sweep(where)
        check_study_inputs(where, self, datasets)

    def _check_sweep(self, where: str) -> None:
        """What the schema cannot say about the sweep: ranges run low to high, and storage."""
        space = self.sweep["space"]
        for dim in search_dimensions():
            value = space[dim.key]
            if dim.sample == "log_float" and value is not None and value[0] > value[1]:
                raise ConfigError(
                    f"{where}.sweep.space.{dim.key}: need low <= high, got {list(value)}"
                )
        storage = self.sweep["storage"]
        if storage is not None and "://" not in storage:
            raise ConfigError(
                f"{where}.sweep.storage: {storage!r} is not a database URL; "
                "use null for a journal file in the sweep folder"
            )


@dataclass(frozen=True)
class MedflowConfig:
    datasets: dict[str, DatasetConfig]
    tracking: TrackingConfig
    classics: ClassicsSettings
    studies: dict[str, StudyConfig]

    @classmethod
    def from_validated(cls, cfg: Mapping[str, Any], source: str = "config") -> MedflowConfig:
        datasets = {
            name: DatasetConfig.from_validated(name, section)
            for name, section in cfg["datasets"].items()
        }
        config = cls(
            datasets=datasets,
            tracking=TrackingConfig.from_section(cfg["tracking"]),
            classics=ClassicsSettings.from_section(cfg["classics"]),
            studies={
                name: StudyConfig.from_validated(name, section)
                for name, section in cfg["studies"].items()
            },
        )
        config._check_references(source)
        return config

    def _check_references(self, source: str) -> None:
        """Cross-key checks a JSON schema cannot express."""
        for study in self.studies.values():
            study.check(self.datasets, source)
        if self.classics.enabled:
            for gate, name in self.classics.datasets.items():
                ds = self.datasets.get(name)
                if ds is None or ds.source != "gates" or ds.options.get("gate") != gate:
                    raise ConfigError(
                        f"{source}: classics.datasets.{gate}: '{name}' must name a dataset with "
                        f"source: gates and options.gate: {gate} (or set classics.enabled: false)"
                    )

    def study(self, name: str) -> StudyConfig:
        return _named("study", self.studies, name)

    def pretrained_by(self, name: str, activation: str) -> str:
        """The study that pretrains study ``name``'s ``activation`` backbone: the first study,
        in config order, with the same pretraining and that activation (often ``name``
        itself). Targets that share a source and settings then share its backbones: e.g.
        two MedMNIST targets pretrained on OrganAMNIST train three backbones, not six."""
        pretraining = self.study(name).pretraining()
        return next(
            other.name
            for other in self.studies.values()
            if other.pretraining() == pretraining and activation in other.activations
        )

    def dataset(self, name: str) -> DatasetConfig:
        return _named("dataset", self.datasets, name)


def _named(kind: str, entries: Mapping[str, T], name: str) -> T:
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(sorted(entries)) or "none"
        raise ConfigError(f"no {kind} named '{name}' in the config; known: {known}") from None
