"""Workflow stages that combine the library with MLflow tracking and files on disk."""
