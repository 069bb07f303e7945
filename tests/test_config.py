"""The schema is the contract: defaults filled, every violation named with key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medflow.config.types import (
    MedflowConfig,
    load_config,
    load_schema,
    read_config_file,
    validate_config,
    validate_section,
)
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
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: classics.datasets.AND: 'gate_and' must name")
    path.write_text(text + "classics: {enabled: false}\n")
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
