"""The one registry of data sources: config ``source`` name -> loader.

Loaders are named as "module:function" and imported on first use, so preparing a
table never pays for importing torchvision or medmnist.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from medflow.data.base import SourceData

Loader = Callable[[dict[str, Any], int], SourceData]

SOURCES: dict[str, str] = {
    "gates": "medflow.data.sources.gates:load",
    "sklearn_breast_cancer": "medflow.data.sources.sklearn_bundled:load_breast_cancer_source",
    "sklearn_digits": "medflow.data.sources.sklearn_bundled:load_digits_source",
    "synthetic": "medflow.data.sources.synthetic:load",
    "csv": "medflow.data.sources.csv_table:load",
    "imagefolder": "medflow.data.sources.imagefolder:load",
    "medmnist": "medflow.data.sources.medmnist_npz:load",
    "synthetic_signals": "medflow.data.sources.synthetic_signals:load",
    "ucr": "medflow.data.sources.ucr:load",
    "wfdb": "medflow.data.sources.wfdb_records:load",
    "synthetic_volumes": "medflow.data.sources.synthetic_volumes:load",
}


def get_loader(source: str) -> Loader:
    try:
        module_name, function = SOURCES[source].split(":")
    except KeyError:
        raise KeyError(f"unknown data source {source!r}; known: {', '.join(SOURCES)}") from None
    return getattr(importlib.import_module(module_name), function)
