"""One module per data source; each exposes ``load(options, seed) -> SourceData``."""
