"""The JSON schema (package data: medflow/config/schema.yaml): loading, validation with every
default filled in, one-line error messages, and the search-space annotations it carries.

The schema is the only source of keys, types, ranges and defaults; nothing else validates them.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml
from jsonschema import validators
from jsonschema.exceptions import ValidationError, best_match

from medflow.errors import ConfigError

SCHEMA_RESOURCE = "schema.yaml"


@cache
def load_schema() -> dict[str, Any]:
    """The schema as shipped with the package (read once per process)."""
    text = resources.files("medflow.config").joinpath(SCHEMA_RESOURCE).read_text()
    return yaml.safe_load(text)


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


def _unknown_keys(where: str, schema: Mapping[str, Any], instance: Mapping[str, Any]) -> str:
    allowed = sorted(schema.get("properties", {}))
    unknown = sorted(set(instance) - set(allowed))
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, allowed, n=1)
        hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    expected = f"expected one of: {', '.join(allowed)}" if allowed else "no keys allowed"
    return f"{where}: unknown key {', '.join(hints)}; {expected}"


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
    instance = error.instance
    match error.validator:
        case "additionalProperties":
            return _unknown_keys(where, error.schema, instance)
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
        case "pattern" if "description" in error.schema:
            # Names: say what is allowed in words, not as a regular expression.
            rule = " ".join(error.schema["description"].split())
            return f"{where}: {instance!r} is not allowed: {rule}"
        case _:
            return f"{where}: {error.message}"


def _fill_and_check(schema: Mapping[str, Any], raw: Mapping[str, Any]) -> tuple[dict, list]:
    instance = copy.deepcopy(dict(raw))
    return instance, list(_FillingValidator(schema).iter_errors(instance))


def validate_config(raw: Mapping[str, Any], source: str = "<config>") -> dict[str, Any]:
    """Return a validated copy of ``raw`` with every default filled in.

    Raises ConfigError naming the file, the key and what was expected.
    """
    instance, errors = _fill_and_check(load_schema(), raw)
    if errors:
        first = best_match(errors)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(first)}{more}")
    _refuse_non_finite(instance, source, ())
    return instance


def _refuse_non_finite(value: Any, source: str, path: tuple[str | int, ...]) -> None:
    """YAML's .inf and .nan are numbers to JSON schema and pass every minimum/maximum
    (nan compares false): no medflow setting means them, so refuse them here, by key."""
    if isinstance(value, float) and not math.isfinite(value):
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)
        raise ConfigError(f"{source}: {where.replace('.[', '[')}: {value} is not a finite number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_non_finite(item, source, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_non_finite(item, source, (*path, index))


def _definition(definition: str) -> dict[str, Any]:
    schema = load_schema()
    return {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}


def validate_section(raw: Mapping[str, Any], definition: str, source: str) -> dict[str, Any]:
    """Validate one ``$defs`` entry of the schema (e.g. a dataset passed by Snakemake)."""
    instance, errors = _fill_and_check(_definition(definition), raw)
    if errors:
        raise ConfigError(f"{source}: {_describe(best_match(errors))}")
    return instance


def properties(definition: str) -> dict[str, Any]:
    """The properties (keys and their subschemas) of one ``$defs`` entry, in schema order."""
    return load_schema()["$defs"][definition].get("properties", {})


def defaults(definition: str) -> dict[str, Any]:
    """The schema defaults of one ``$defs`` entry, as a config with that section empty gets."""
    return validate_section({}, definition, source=f"defaults of {definition}")


@dataclass(frozen=True)
class Dimension:
    """One search-space dimension, as annotated in ``$defs/search_space``.

    ``key`` is the search_space key, ``param`` the sampled parameter's name (in Optuna and in
    best_params.json), ``sample`` how it is drawn (``categorical`` from a list or ``log_float``
    from a [low, high] range), ``sets`` the run-config field it sets ("section.field"), or
    None where it is no run-config field (freeze).
    """

    key: str
    param: str
    sample: str
    sets: str | None


def search_dimensions() -> tuple[Dimension, ...]:
    """Every dimension of the search space, in schema order (the order trials sample in)."""
    return tuple(
        Dimension(key, spec["x-param"], spec["x-sample"], spec["x-sets"])
        for key, spec in properties("search_space").items()
    )
