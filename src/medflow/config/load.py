"""Read a YAML config file, validate it against the schema and type it (the CLI's entry)."""

from __future__ import annotations

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
