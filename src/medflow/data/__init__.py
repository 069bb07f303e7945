"""Data sources, splitting and the prepared-data file contract."""
