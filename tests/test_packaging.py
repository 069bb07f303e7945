"""The wheel is complete: its package data (the config schema first) is in it, and a
non-editable install validates a config without the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

PYTHON = sys.executable
# Offline and quiet: nothing but the wheel itself is built or installed.
PIP = (PYTHON, "-m", "pip", "--quiet", "--no-input")
OFFLINE = ("--no-deps", "--no-index")


def _package_data_files() -> list[str]:
    """Wheel paths of every file pyproject's package-data names (as found in src/)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    found = []
    for package, patterns in config["tool"]["setuptools"]["package-data"].items():
        folder = REPO / "src" / package.replace(".", "/")
        for pattern in patterns:
            matches = [p for p in folder.glob(pattern) if p.is_file()]
            assert matches, f"package-data {package}: {pattern} matches no file"
            found += [p.relative_to(REPO / "src").as_posix() for p in matches]
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline from a copy of the source (the build leaves nothing in the repo)."""
    root = tmp_path_factory.mktemp("packaging")
    tree = root / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", tree / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    build = subprocess.run(
        [*PIP, "wheel", ".", *OFFLINE, "--no-build-isolation", "-w", str(root / "dist")],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    (path,) = (root / "dist").glob("medflow-*.whl")
    return path


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    """The wheel installed (not editable) into a folder of its own."""
    target = wheel.parent.parent / "site"
    install = subprocess.run(
        [*PIP, "install", *OFFLINE, "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    return target


def _installed_python(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [PYTHON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_wheel_holds_the_schema_and_all_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "medflow/config/schema.yaml" in names
    for path in _package_data_files():
        assert path in names, f"{path} is package data but not in the wheel"
    with zipfile.ZipFile(wheel) as zf:
        schema = zf.read("medflow/config/schema.yaml")
    assert schema == (REPO / "src/medflow/config/schema.yaml").read_bytes()
    assert (REPO / "config/config.schema.yaml").read_bytes() == schema  # the README's path


def test_installed_wheel_validates_a_config_and_reports_a_bad_key(
    site: Path, tmp_path: Path
) -> None:
    where = _installed_python(site, "-c", "import medflow; print(medflow.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout

    config = REPO / "config" / "config.yaml"
    ok = _installed_python(site, "-m", "medflow", "validate", "--config", str(config), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"{config}: valid" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  d: {source: gates, sed: 1}\n")
    err = _installed_python(site, "-m", "medflow", "validate", "--config", str(bad), cwd=tmp_path)
    assert err.returncode == 2
    assert "unknown key 'sed' (did you mean 'seed'?)" in err.stderr
