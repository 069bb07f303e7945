"""Provenance tags every run carries: stage, study, dataset and config digests, git commit.

Standard library only: the report path imports ``git_commit`` without paying for mlflow.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def git_commit(cwd: Path | str | None = None) -> str:
    """HEAD commit of the repo at ``cwd``, "-dirty" if tracked files changed, else "unknown"."""
    # No optional locks: `git status` must not take index.lock while other jobs use git.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "--verify", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = head.stdout.strip()
    return f"{commit}-dirty" if dirty.returncode != 0 or dirty.stdout.strip() else commit


def standard_tags(
    stage: str, study: str, dataset_hash: str, config_hash: str, **extra: Any
) -> dict[str, str]:
    """Provenance tags every run carries, plus extras (mode, seed, parent_model_run_id, ...).

    ``config_hash`` is the value of ``medflow.runtime.digest.config_hash`` over the run's config.
    """
    tags = {
        "stage": stage,
        "study": study,
        "dataset_hash": dataset_hash,
        "config_hash": config_hash,
        "git_commit": git_commit(),
        **extra,
    }
    return {key: str(value) for key, value in tags.items() if value is not None}
