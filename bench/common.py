"""Side-by-side measurement helpers: interleaved A/B pairs, medians, JSON evidence."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

OUT_DIR = Path("results/bench")


def pin_threads(n: int) -> None:
    """Same thread count for every contender, so ratios compare loops, not schedulers."""
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def interleaved(a: Callable[[], float], b: Callable[[], float], pairs: int) -> dict:
    """Run a, b, a, b, ...; each callable returns seconds. Ratio = median(b / a) per pair."""
    a(), b()  # warm-up: allocator, kernels, imports
    times_a, times_b = [], []
    for i in range(pairs):
        first, second = (a, b) if i % 2 == 0 else (b, a)  # alternate who goes first
        t1, t2 = first(), second()
        ta, tb = (t1, t2) if i % 2 == 0 else (t2, t1)
        times_a.append(ta)
        times_b.append(tb)
    ratios = [tb / ta for ta, tb in zip(times_a, times_b, strict=True)]
    return {
        "a_median_s": statistics.median(times_a),
        "b_median_s": statistics.median(times_b),
        "ratio_b_over_a": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "pairs": pairs,
    }


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def environment() -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(name: str, payload: dict) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    return path
