"""The README's copy-paste commands, run as written in a working folder laid out like a
clone (Snakefile, workflow/, config/ and .venv/ linked from this checkout)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.conftest import REPO, path_without_venv

_LINKED = ("Snakefile", "workflow", "config", ".venv")


def readme_block(name: str) -> list[str]:
    """The command lines of the bash block after ``<!-- readme-test: name -->``."""
    text = (REPO / "README.md").read_text()
    match = re.search(
        rf"<!-- readme-test: {re.escape(name)} -->\s*```bash\n(.*?)```", text, re.DOTALL
    )
    assert match, f"README.md has no block marked readme-test: {name}"
    return [line for line in match.group(1).splitlines() if line.strip()]


def run_readme_block(
    workdir: Path, name: str, config_overrides: str | list[str], timeout: int = 1500
) -> subprocess.CompletedProcess:
    """Run block ``name`` in ``workdir``; each snakemake line gets ``--cores 2`` and
    ``--config <config_overrides>`` appended (the tests' only shortening)."""
    if isinstance(config_overrides, str):
        config_overrides = [config_overrides]
    quoted = " ".join(map(shlex.quote, config_overrides))
    for entry in _LINKED:
        link = workdir / entry
        if not link.exists():
            link.symlink_to(REPO / entry)
    lines = [
        f"{line} --cores 2 --config {quoted}" if line.startswith(".venv/bin/snakemake") else line
        for line in readme_block(name)
    ]
    env = {**os.environ, "PATH": path_without_venv()}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
