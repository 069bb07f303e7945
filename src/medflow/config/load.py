"""Read a YAML config file, validate it against the schema and type it (the CLI's entry)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from medflow.config.schema import validate_config
from medflow.config.types import MedflowConfig
from medflow.errors import ConfigError


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


def workflow_config(
    given: dict[str, Any],
    command_line: dict[str, Any],
    configfiles: list[str],
    demo: str | Path,
) -> dict[str, Any]:
    """The raw config of a Snakemake run: the ``--configfile`` files, or, when none is
    given, the demo config; with the ``--config`` values on top either way.

    A user's config file replaces the demo instead of merging into it: a study of one's
    own must not also run the demo's datasets and studies. ``given`` is Snakemake's merge
    of the files and ``--config``; ``command_line`` is ``--config`` alone, whose nested
    values Snakemake leaves as strings ("epochs: 1" arrives as '1'): they are typed here.
    """
    if configfiles:
        base = given
    else:
        demo = Path(demo)
        try:
            base = yaml.safe_load(demo.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(
                f"no --configfile given and the demo config {demo} is missing"
            ) from None
    _merge(base, _typed(command_line))
    return base


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    """``overrides`` into ``base`` key by key, as Snakemake merges ``--config`` into a file."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?\.inf|\.nan", re.IGNORECASE)
_WORDS = {"true": True, "false": False, "null": None, "~": None}


def _typed(value: Any) -> Any:
    """Numbers, true/false and null in a ``--config`` value as YAML types; every other
    string stays a string (so a class named "no" is not read as false)."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, str):
        if value.lower() in _WORDS:
            return _WORDS[value.lower()]
        if _NUMBER.fullmatch(value):
            if re.fullmatch(r"[-+]?\d+", value):
                return int(value)
            return float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))
    return value
