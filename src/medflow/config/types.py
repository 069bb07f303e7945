"""Load, validate and type the medflow configuration.

The JSON schema (config/config.schema.yaml) is the single source of truth for keys,
types and defaults; this module fills the defaults, turns schema violations into
one-line messages naming the key and the file, and builds typed dataclasses.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import validators
from jsonschema.exceptions import ValidationError, best_match

from medflow.errors import ConfigError

SCHEMA_PATH = Path(__file__).parents[1] / "config.schema.yaml"


@cache
def load_schema() -> dict[str, Any]:
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class: type) -> type:
    """A validator that also fills each missing property with its schema default."""
    check_properties = validator_class.VALIDATORS["properties"]

    def fill_then_check(validator, properties, instance, schema) -> Iterator[ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": fill_then_check})


_FillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: ValidationError) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _innermost(error: ValidationError) -> ValidationError:
    """For "one of" schemas (e.g. null or an object), the branch the user was aiming at."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        aimed = [e for e in error.context if e.validator != "type"]
        if not aimed:  # wrong type for every branch: report the union of types
            return error
        error = best_match(aimed)
    return error


def _describe(error: ValidationError) -> str:
    """One human sentence for a schema violation."""
    error = _innermost(error)
    where = _key_path(error)
    if error.validator in ("oneOf", "anyOf") and error.context:
        kinds = [str(e.validator_value) for e in error.context if e.validator == "type"]
        got = f"{type(error.instance).__name__} {error.instance!r}"
        return (
            f"{where}: expected {' or '.join(dict.fromkeys(kinds)) or 'another value'}, got {got}"
        )
    schema, instance = error.schema, error.instance
    match error.validator:
        case "additionalProperties":
            allowed = sorted(schema.get("properties", {}))
            unknown = sorted(set(instance) - set(allowed))
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, allowed, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            expected = f"expected one of: {', '.join(allowed)}" if allowed else "no keys allowed"
            return f"{where}: unknown key {', '.join(hints)}; {expected}"
        case "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            return f"{where}: missing required key '{missing}'"
        case "type":
            expected = error.validator_value
            expected = " or ".join(expected) if isinstance(expected, list) else expected
            return f"{where}: expected {expected}, got {type(instance).__name__} {instance!r}"
        case "enum":
            choices = ", ".join(map(str, error.validator_value))
            return f"{where}: {instance!r} is not one of: {choices}"
        case _:
            return f"{where}: {error.message}"


def validate_config(raw: Mapping[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Return a validated copy of ``raw`` with every default filled in.

    Raises ConfigError naming the file, the key and what was expected.
    """
    instance = copy.deepcopy(dict(raw))
    schema = load_schema()
    errors = list(_FillingValidator(schema).iter_errors(instance))
    if errors:
        first = best_match(errors)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(first)}{more}")
    return instance


def validate_section(raw: Mapping[str, Any], definition: str, source: str) -> dict[str, Any]:
    """Validate one ``$defs`` entry of the schema (e.g. a dataset passed by Snakemake)."""
    schema = load_schema()
    wrapper = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    instance = copy.deepcopy(dict(raw))
    errors = list(_FillingValidator(wrapper).iter_errors(instance))
    if errors:
        raise ConfigError(f"{source}: {_describe(best_match(errors))}")
    return instance


def load_config(path: str | Path) -> MedflowConfig:
    """Read, validate and type a config file."""
    return MedflowConfig.from_validated(read_config_file(path), source=str(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return validate_config(raw, source=str(path))


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
    options: dict[str, Any] = field(default_factory=dict)

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
class TrackingConfig:
    uri: str | None
    experiment_prefix: str
    ui_url: str | None = None

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
class PretrainConfig:
    dataset: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    patience: int
    seed: int


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
    seeds_per_job: int | None = None

    @classmethod
    def from_validated(cls, name: str, section: Mapping[str, Any]) -> StudyConfig:
        pretrain = section["pretrain"]
        return cls(
            name=name,
            target=section["target"],
            pretrain=PretrainConfig(**pretrain) if pretrain else None,
            model=dict(section["model"]),
            optim=dict(section["optim"]),
            train=dict(section["train"]),
            sweep=dict(section["sweep"]),
            modes=tuple(section["refine"]["modes"]),
            seeds=tuple(section["refine"]["seeds"]),
            bootstrap=section["evaluate"]["bootstrap"],
            seeds_per_job=section["refine"]["seeds_per_job"],
        )

    @property
    def activations(self) -> tuple[str, ...]:
        return tuple(self.sweep["space"]["activations"])

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
            tracking=TrackingConfig(**cfg["tracking"]),
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
        try:
            return self.studies[name]
        except KeyError:
            known = ", ".join(sorted(self.studies)) or "none"
            raise ConfigError(f"no study named '{name}' in the config; known: {known}") from None

    def dataset(self, name: str) -> DatasetConfig:
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise ConfigError(f"no dataset named '{name}' in the config; known: {known}") from None
