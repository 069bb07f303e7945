"""Side-by-side measurement helpers: interleaved rounds, medians, result rows, JSON evidence.

Timings on a shared machine drift by tens of per cent within minutes, so a ratio is only
meaningful when its contenders run alternately in the same process: every round runs each
contender once (rotating who goes first) and the ratio is the median of per-round ratios.
"""

from __future__ import annotations

import json
import operator
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

OUT_DIR = Path("results/bench")
PACKAGES = (
    "medflow",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "scikit-learn",
    "mlflow",
    "optuna",
    "snakemake",
)
_GOAL_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Options:
    """What every benchmark module's ``run(options)`` gets from ``python -m bench``."""

    quick: bool = False  # tiny sizes, one round: checks that the code runs, measures nothing
    rounds: int = 5  # interleaved rounds per ratio (median taken)
    threads: int = 1
    out_dir: Path = OUT_DIR
    command: str = "python -m bench"  # recorded in every JSON (not pytest's argv in tests)


def pin_threads(n: int) -> None:
    """Same thread count for every contender, so ratios compare loops, not schedulers."""
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["MKL_NUM_THREADS"] = str(n)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def interleaved_many(
    contenders: Mapping[str, Callable[[], object]], rounds: int, baseline: str
) -> dict[str, Any]:
    """Run every contender once per round (order rotated each round), timing each call.

    Ratios are per round, contender time over the baseline's time in the same round, then the
    median over rounds: a slow phase of the machine hits both sides of a ratio alike. Wall time
    is the measure; the process CPU time is recorded beside it because on a shared machine it
    is much less disturbed by other people's jobs (with pinned threads it is the same work).
    """
    names = list(contenders)
    for name in names:  # warm-up: allocator, kernels, lazy imports
        contenders[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            contenders[name]()
            wall[name].append(time.perf_counter() - wall0)
            cpu[name].append(time.process_time() - cpu0)

    def ratios(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
        return {
            name: _spread([t / b for t, b in zip(times[name], times[baseline], strict=True)])
            for name in names
            if name != baseline
        }

    return {
        "rounds": rounds,
        "baseline": baseline,
        "median_s": {name: statistics.median(t) for name, t in wall.items()},
        "median_cpu_s": {name: statistics.median(t) for name, t in cpu.items()},
        "times_s": wall,
        "cpu_times_s": cpu,
        "ratio_over_baseline": ratios(wall),
        "cpu_ratio_over_baseline": ratios(cpu),
    }


def interleaved(a: Callable[[], object], b: Callable[[], object], pairs: int) -> dict[str, Any]:
    """A/B form of :func:`interleaved_many`: a, b, b, a, a, b, ...; ratio = median(b / a)."""
    result = interleaved_many({"a": a, "b": b}, pairs, baseline="a")
    ratio, cpu = result["ratio_over_baseline"]["b"], result["cpu_ratio_over_baseline"]["b"]
    return {
        "a_median_s": result["median_s"]["a"],
        "b_median_s": result["median_s"]["b"],
        "ratio_b_over_a": ratio["median"],
        "ratio_min": ratio["min"],
        "ratio_max": ratio["max"],
        "cpu_ratio_b_over_a": cpu["median"],
        "cpu_ratio_min": cpu["min"],
        "cpu_ratio_max": cpu["max"],
        "pairs": pairs,
    }


def row(case: str, ratio: float | None, goal: str | None, note: str = "") -> dict[str, Any]:
    """One line of the summary table; ``goal`` is e.g. ">= 3" or "<= 1.02", None: reported only."""
    met = None
    if goal is not None and ratio is not None:
        op, target = goal.split()
        met = bool(_GOAL_OPS[op](ratio, float(target)))
    return {"case": case, "ratio": ratio, "goal": goal or "info", "met": met, "note": note}


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max([len("case"), *(len(r["case"]) for r in rows)])
    lines = [f"{'case':{width}s}  {'ratio':>7s}  {'goal':8s}  met   note"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:7.3f}"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append(f"{r['case']:{width}s}  {ratio:>7s}  {r['goal']:8s}  {met:4s}  {r['note']}")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment(command: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(name: str, payload: dict[str, Any], options: Options) -> Path:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / f"{name}.json"
    document = {"environment": environment(options.command), **payload}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
