"""Computations the report shows that need the test split, a model or the Optuna study:
a classical baseline, first-layer representations, parameter importances. The analyze
stage runs them and writes JSON/PNG files; the report only reads those."""
