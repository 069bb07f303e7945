"""Config dataclasses whose every value comes from one schema definition (no field defaults).

``from_section`` types an already validated section; ``from_schema`` starts from the schema's
defaults and validates the few values the caller sets (fixed settings, tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from medflow.config import schema


def _as_json(value: Any) -> Any:
    """Tuples (how the frozen configs hold sequences) as the lists JSON schema checks."""
    if isinstance(value, tuple | list):
        return [_as_json(v) for v in value]
    return value


class Section:
    """Mixin of a frozen config dataclass typing the ``$defs`` entry named by ``SCHEMA``.

    ``SKIPPED`` names keys of that section which another view reads (e.g. sweep's ``space``).
    Fields that the section does not hold (e.g. TrainConfig.seed) are passed as ``extra``.
    """

    SCHEMA: ClassVar[str]
    SKIPPED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_section(cls, section: Mapping[str, Any], /, **extra: Any) -> Self:
        """Every field from a schema-validated ``section`` plus ``extra``; no validation here
        (the config was validated at the entry). A missing or unknown key is a bug: TypeError."""
        values = {k: v for k, v in section.items() if k not in cls.SKIPPED} | extra
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        missing = [n for n in names if n not in values]
        if unknown or missing:
            raise TypeError(
                f"{cls.__name__} from section '{cls.SCHEMA}': "
                f"unknown keys {unknown}, missing keys {missing}"
            )
        return cls(**values)

    @classmethod
    def from_schema(cls, /, **values: Any) -> Self:
        """The schema defaults of ``SCHEMA`` with ``values`` set, validated by the schema
        (ConfigError); values for fields outside the schema section pass through as ``extra``."""
        known = schema.properties(cls.SCHEMA)
        section = {k: _as_json(v) for k, v in values.items() if k in known}
        validated = schema.validate_section(section, cls.SCHEMA, source=cls.__name__)
        extra = {k: v for k, v in values.items() if k not in known}
        return cls.from_section(validated, **extra)
