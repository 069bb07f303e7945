"""The medmnist package's INFO table (splits, channels, task per flag), read without
importing the package: ``import medmnist`` pulls in torch and torchvision (~5 s), which
every config validation and prepare job would otherwise pay."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from medflow.errors import MedflowError


@cache
def medmnist_info() -> dict[str, dict[str, Any]]:
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise MedflowError("the medmnist package is not installed (pip install medmnist)")
    path = Path(next(iter(spec.submodule_search_locations))) / "info.py"
    info_spec = importlib.util.spec_from_file_location("medflow._medmnist_info", path)
    module = importlib.util.module_from_spec(info_spec)
    info_spec.loader.exec_module(module)
    return module.INFO
