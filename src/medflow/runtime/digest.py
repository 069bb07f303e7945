"""The one config digest: what a run's ``config_hash`` tag and a checkpoint's resume check compare.

Standard library only, so training code and light entry points can both use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def config_hash(cfg: Mapping[str, Any]) -> str:
    """First 12 hex chars of sha256 over canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(
        cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
