"""The configuration: the schema (package data) validates and fills a YAML config once at the
entry (schema, load); typed views (types) and config dataclasses (section) read only that."""
