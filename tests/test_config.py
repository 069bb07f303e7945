"""The schema is the contract: defaults filled, every violation named with key and file, and
every typed config built from it alone."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from medflow.config.load import load_config, read_config_file
from medflow.config.schema import (
    defaults,
    load_schema,
    properties,
    search_dimensions,
    validate_config,
    validate_section,
)
from medflow.config.section import Section, _as_json
from medflow.config.types import MedflowConfig
from medflow.errors import ConfigError
from tests.conftest import REPO, run_cli


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_default_config_is_valid_and_typed():
    cfg = MedflowConfig.from_validated(read_config_file(REPO / "config/config.yaml"))
    assert {"gate_xor", "breast_cancer", "digits", "synthetic"} <= set(cfg.datasets)
    assert cfg.dataset("digits").train_per_class == 10
    assert cfg.dataset("synthetic").options["n_images"] >= 20000


def test_real_data_config_is_valid():
    cfg = MedflowConfig.from_validated(read_config_file(REPO / "config/medmnist.yaml"))
    assert cfg.dataset("breastmnist").options["flag"] == "breastmnist"
    assert cfg.dataset("breastmnist").options["download"] is False


def test_defaults_are_filled_including_source_options():
    cfg = validate_config({"datasets": {"s": {"source": "synthetic"}}})
    section = cfg["datasets"]["s"]
    assert section["seed"] == 0
    assert section["split"] == {"val_fraction": 0.15, "test_fraction": 0.2, "stratify": True}
    assert section["options"] == {"n_images": 20000, "image_size": 28, "noise": 0.08}


def _all_property_schemas(node, path="$"):
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}", name, sub, node.get("required", [])
        for key, value in node.items():
            if key in ("if", "then", "else", "not"):
                continue  # conditions constrain keys described in "properties"
            yield from _all_property_schemas(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _all_property_schemas(value, f"{path}[{i}]")


def test_every_schema_key_has_description_and_default():
    schema = load_schema()
    checked = 0
    for where, name, sub, required in _all_property_schemas(schema):
        if "$ref" in sub or set(sub) <= {"const"}:
            continue  # if/then discriminators and references are described at their target
        checked += 1
        assert sub.get("description"), f"{where} has no description"
        assert "default" in sub or name in required, f"{where} has no default"
    assert checked > 25


def test_every_object_rejects_unknown_keys():
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                yield node
            for value in node.values():
                yield from objects(value)

    for obj in objects(load_schema()):
        assert obj.get("additionalProperties") is False, obj.get("description")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "datasets:\n  d:\n    source: synthetic\n    splt: {}\n",
            "datasets.d: unknown key 'splt' (did you mean 'split'?)",
        ),
        (
            "datasets:\n  d:\n    source: synthetic\n    options: {n_image: 5}\n",
            "datasets.d.options: unknown key 'n_image' (did you mean 'n_images'?)",
        ),
        (
            "datasets:\n  d:\n    source: synthetic\n    seed: one\n",
            "datasets.d.seed: expected integer",
        ),
        ("datasets:\n  d:\n    seed: 1\n", "datasets.d: missing required key 'source'"),
        ("datasets:\n  d:\n    source: excel\n", "datasets.d.source: 'excel' is not one of"),
        (
            "datasets:\n  d:\n    source: csv\n    options: {path: a.csv}\n",
            "datasets.d.options: missing required key 'label'",
        ),
        (
            "datasets:\n  d:\n    source: gates\n    split: {val_fraction: 1.5}\n",
            "datasets.d.split.val_fraction",
        ),
        ("datasetz: {}\n", "unknown key 'datasetz' (did you mean 'datasets'?)"),
        ("datasets: {}\ntracking: {ui_url: 'localhost:5000'}\n", "tracking.ui_url"),
    ],
)
def test_violations_name_file_key_and_expectation(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected in message
    assert "\n" not in message


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        read_config_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(_write(tmp_path, "datasets: [\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_config_file(_write(tmp_path, "- a\n- b\n"))


def test_section_validation_for_specs_passed_by_snakemake():
    section = validate_section({"source": "gates"}, "dataset", source="--spec")
    assert section["options"] == {"gate": "OR"}
    with pytest.raises(ConfigError, match=r"--spec: seed: expected integer"):
        validate_section({"source": "gates", "seed": "x"}, "dataset", source="--spec")


def test_unknown_dataset_name_lists_known_ones():
    raw = {"datasets": {"a": {"source": "gates"}}, "classics": {"enabled": False}}
    cfg = MedflowConfig.from_validated(validate_config(raw))
    with pytest.raises(ConfigError, match=r"no dataset named .b.*known: a"):
        cfg.dataset("b")


def test_classics_must_point_at_matching_gate_datasets(tmp_path):
    text = "datasets:\n  gate_or: {source: gates}\n  gate_and: {source: gates}\n"
    path = _write(tmp_path, text + "classics: {enabled: true}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: classics.datasets.AND: 'gate_and' must name")
    path.write_text(text)  # off unless a config asks for it (the demo does)
    assert load_config(path).classics.enabled is False


def test_cli_rejects_bad_config_with_one_line_and_nonzero_exit(tmp_path):
    path = _write(tmp_path, yaml.safe_dump({"datasets": {"d": {"source": "gates", "sed": 1}}}))
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown key 'sed' (did you mean 'seed'?)" in lines[0]
    ok = run_cli("validate", "--config", str(REPO / "config/config.yaml"))
    assert ok.returncode == 0, ok.stderr


# --- typed configs take every value from the schema -----------------------------------------

# Every module defining a config dataclass (a Section): imported so that the walk sees them all.
CONFIG_MODULES = (
    "medflow.config.types",
    "medflow.ml.models",
    "medflow.ml.optim",
    "medflow.ml.loop",
    "medflow.ml.perceptron",
    "medflow.hpo.worker",
)
REQUIRED = {"pretrain": {"dataset": "d"}}  # $defs with required keys and no default


def _section_types() -> list[type]:
    for module in CONFIG_MODULES:
        importlib.import_module(module)
    return sorted(Section.__subclasses__(), key=lambda cls: cls.__name__)


def test_config_types_cover_the_schema_definitions() -> None:
    names = {cls.__name__: cls.SCHEMA for cls in _section_types()}
    expected = {"ModelConfig", "OptimConfig", "TrainConfig", "ClassicsConfig", "TrackingConfig"}
    assert expected | {"PretrainConfig"} <= set(names)
    assert set(names.values()) <= set(load_schema()["$defs"])


@pytest.mark.parametrize("cls", _section_types(), ids=lambda cls: cls.__name__)
def test_each_config_type_builds_from_empty_section_and_schema_defaults(cls: type) -> None:
    """No field defaults; built from {} + schema defaults every value equals the schema's."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for f in fields.values():
        assert f.default is dataclasses.MISSING, f"{cls.__name__}.{f.name} has a default"
        assert f.default_factory is dataclasses.MISSING, f"{cls.__name__}.{f.name}"
    section = validate_section(REQUIRED.get(cls.SCHEMA, {}), cls.SCHEMA, source="test")
    keys = set(properties(cls.SCHEMA)) - cls.SKIPPED
    extra = {name: object() for name in set(fields) - keys}  # fields the stage sets (seed)
    cfg = cls.from_section(section, **extra)
    for key in keys:
        assert key in fields, f"schema key {cls.SCHEMA}.{key} has no {cls.__name__} field"
        assert _as_json(getattr(cfg, key)) == section[key], f"{cls.__name__}.{key}"
    assert cls.from_schema(**REQUIRED.get(cls.SCHEMA, {}), **extra) == cfg


def test_from_section_refuses_missing_and_unknown_keys() -> None:
    from medflow.ml.loop import TrainConfig

    with pytest.raises(TypeError, match=r"unknown keys \[\], missing keys \['seed'\]"):
        TrainConfig.from_section(defaults("train"))
    with pytest.raises(TypeError, match=r"unknown keys \['sed'\]"):
        TrainConfig.from_section(defaults("train"), seed=0, sed=1)
    with pytest.raises(ConfigError, match=r"TrainConfig: batch_size: 0 is less than"):
        TrainConfig.from_schema(batch_size=0, seed=0)


def test_former_dataclass_defaults_now_come_from_the_schema() -> None:
    """The values that dataclass defaults used to disagree on: the schema's win everywhere."""
    from medflow.ml.loop import TrainConfig
    from medflow.ml.optim import OptimConfig
    from medflow.ml.perceptron import ClassicsConfig

    train = TrainConfig.from_schema(seed=0)
    assert (train.batch_size, train.patience) == (32, 8)  # were 64 and 10
    assert OptimConfig.from_schema().schedule == "cosine"  # was constant
    classics = ClassicsConfig.from_schema()
    assert (classics.mlp_epochs, classics.mlp_lr) == (2000, 0.1)  # were 1000 and 0.01
    assert defaults("sweep")["epochs"] == 15  # SweepConfig had 10


def _study_config(tmp_path: Path, study: str) -> Path:
    text = (
        "datasets:\n  d: {source: sklearn_digits}\nclassics: {enabled: false}\n"
        f"studies:\n  s:\n    target: d\n    refine: {{modes: [scratch]}}\n{study}"
    )
    return _write(tmp_path, text)


@pytest.mark.parametrize(
    ("study", "expected"),
    [
        (
            "    model: {arch: mlp, weights: imagenet}\n",
            "studies.s.model.weights: 'imagenet' needs a torchvision arch, not 'mlp'",
        ),
        (
            "    sweep: {space: {lr: [0.1, 0.001]}}\n",
            "studies.s.sweep.space.lr: need low <= high, got [0.1, 0.001]",
        ),
        (
            "    sweep: {space: {weight_decay: [0.1, 0.001]}}\n",
            "studies.s.sweep.space.weight_decay: need low <= high",
        ),
        (
            "    sweep: {storage: optuna.db}\n",
            "studies.s.sweep.storage: 'optuna.db' is not a database URL",
        ),
    ],
)
def test_cross_key_checks_the_schema_cannot_express(tmp_path, study, expected) -> None:
    path = _study_config(tmp_path, study)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {expected}"), str(err.value)
    fine = (
        "    model: {arch: resnet18, weights: imagenet}\n    sweep: {space: {lr: [0.01, 0.01]}}\n"
    )
    assert load_config(_study_config(tmp_path, fine)).study("s").model["weights"] == "imagenet"


def test_search_dimensions_name_the_run_config_field_they_set() -> None:
    from medflow.ml.loop import RunConfig, TrainConfig
    from medflow.ml.models import ModelConfig
    from medflow.ml.optim import OptimConfig

    dims = search_dimensions()
    assert [d.key for d in dims] == list(properties("search_space"))
    # The order trials sample in (TPE's random draws follow it): never reorder the schema.
    assert [d.param for d in dims][:3] == ["optimizer", "activation", "lr"]
    sections = {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}
    assert set(sections) == {f.name for f in dataclasses.fields(RunConfig)}
    space = defaults("search_space")
    for dim in dims:
        assert dim.sample in ("categorical", "log_float"), dim
        if dim.sample == "log_float" and space[dim.key] is not None:
            assert len(space[dim.key]) == 2
        if dim.sets is not None:
            section, field = dim.sets.split(".")
            assert field in {f.name for f in dataclasses.fields(sections[section])}, dim


def test_studies_with_the_same_pretraining_share_its_backbones():
    raw = yaml.safe_load((REPO / "config" / "medmnist.yaml").read_text())
    pneumonia = raw["studies"]["pneumoniamnist"]
    # a third target like pneumoniamnist but with its own activations and one other pretraining
    raw["studies"]["own_relu"] = {**pneumonia, "sweep": {"space": {"activations": ["relu", "elu"]}}}
    raw["studies"]["longer"] = {**pneumonia, "pretrain": {**pneumonia["pretrain"], "epochs": 9}}
    cfg = MedflowConfig.from_validated(validate_config(raw))
    assert cfg.pretrained_by("breastmnist", "relu") == "breastmnist"
    # the targets' own train/sweep/refine settings differ; their pretraining does not
    assert cfg.pretrained_by("pneumoniamnist", "tanh") == "breastmnist"
    assert cfg.pretrained_by("own_relu", "relu") == "breastmnist"
    assert cfg.pretrained_by("own_relu", "elu") == "own_relu"  # no earlier study has elu
    assert cfg.pretrained_by("longer", "relu") == "longer"
