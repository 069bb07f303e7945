"""``python -m bench``: every benchmark, one table of ratios measured side by side.

Each module writes results/bench/<module>.json (machine, date, versions, command, raw
timings); this writes results/bench/summary.json with the table and the wall time.

Usage: python -m bench [--quick] [--rounds 5] [--threads 1] [--only data_path,gpu]
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from pathlib import Path

from bench.common import OUT_DIR, Options, format_table, pin_threads, write_json

MODULES = (
    "data_path",
    "logging_cost",
    "workflow_overhead",
    "sweep_efficiency",
    "sweep_modes",
    "cpu_bf16",
    "amp_accuracy",
    "real_study",
    "gpu",
)
# Run only when named in --only: longer than make bench's budget allows.
OPT_IN = ("amp_seeds",)


def parse_args(argv: list[str] | None = None) -> tuple[Options, tuple[str, ...]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, 1 round: checks the code, not speed"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per ratio")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", default=",".join(MODULES), help="comma-separated modules")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the JSON files")
    args = parser.parse_args(argv)
    only = tuple(name for name in args.only.split(",") if name)
    unknown = set(only) - set(MODULES) - set(OPT_IN)
    if unknown:
        known = MODULES + OPT_IN
        parser.error(f"unknown module(s) {', '.join(sorted(unknown))}; known: {known}")
    if not args.quick and args.rounds < 5:
        parser.error("--rounds must be >= 5 (medians of fewer rounds are noise); or use --quick")
    rounds = 1 if args.quick else args.rounds
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench", *argv])
    return Options(args.quick, rounds, args.threads, args.out, command), only


def main(argv: list[str] | None = None) -> list[dict]:
    options, only = parse_args(argv)
    pin_threads(options.threads)
    started = time.perf_counter()
    rows, seconds = [], {}
    for name in only:
        module_started = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        rows += importlib.import_module(f"bench.{name}").run(options)
        seconds[name] = time.perf_counter() - module_started
        print(f"[bench] {name} done in {seconds[name]:.0f} s", flush=True)
    total = time.perf_counter() - started
    path = write_json(
        "summary",
        {
            "quick": options.quick,
            "rounds": options.rounds,
            "threads": options.threads,
            "seconds_by_module": seconds,
            "total_seconds": total,
            "rows": rows,
        },
        options,
    )
    print()
    print(format_table(rows))
    print(f"\ntotal {total:.0f} s; JSON in {path.parent}/")
    return rows


if __name__ == "__main__":
    main()
