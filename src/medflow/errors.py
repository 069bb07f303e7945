"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class MedflowError(Exception):
    """Base class for problems with the user's input, config or data."""


class ConfigError(MedflowError):
    """The configuration does not match the schema."""


class DataError(MedflowError):
    """A data source is missing, malformed or inconsistent."""
