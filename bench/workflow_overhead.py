"""Workflow overhead: the default ``snakemake`` run's wall time over the training it recorded.

The run is what ``make run`` does: ``config/config.yaml`` with the workstation profile (every
core) in a fresh folder, its jobs forked from the run's job server
(``medflow.runtime.job_server``). Training time is the sum of every run's ``epoch_time_s``
history in the run's MLflow store: what ``train()`` spent in its epochs. Per rule, the jobs'
wall seconds come from Snakemake's log. The rest is fixed cost, measured here per job, cold (a
fresh interpreter, as a job without the server pays it) and served (a job forked from a
warmed-up server):

- ``interpreter``: ``python -c pass``;
- ``imports`` (cold): what a training job imports (``medflow.cli``, ``medflow.stages.sweep``,
  ``medflow.stages.refine``), attributed to top-level packages with ``-X importtime``;
- ``handoff`` (served): ``python -m medflow validate`` through a warmed-up job server, whole
  (interpreter, client, fork, and the validation itself);
- ``store_open``: ``Tracker`` on an existing SQLite store (first client of the process);
- ``store_migration``: ``Tracker`` on a new store (MLflow's schema migration), once per store;
- ``run_records``: ``start_run`` + ``log_params`` + learning-curve figure + ``log_torch_model``
  + ``end_run``, what ``tracked_training`` adds to a refine/pretrain job;
- ``dag_build``: ``snakemake -n`` on the config (Snakemake pays it once per invocation).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import Options, row, write_json
from medflow.config.load import load_config
from medflow.runtime.job_server import JobServer, warm_ups
from medflow.runtime.job_wire import ENV_VAR

GOAL = "<= 2.0"  # issue 18
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = REPO / "config" / "config.yaml"
PROFILE = REPO / "workflow" / "profiles" / "default"
JOB_IMPORTS = "medflow.cli, medflow.stages.sweep, medflow.stages.refine"
LAST_WARM_UP = list(warm_ups())[-1].__name__
_SERVER_WARM_TIMEOUT_S = 120.0

# The fixed costs of one training job, timed from the inside: {start} is the cold start (the
# job's imports) or the served one (the server's warm-ups, then a fork).
_JOB_PROBE = """
import json, os, sys, time
{start}
from pathlib import Path
import torch
from medflow.plots.training import learning_curve_figure
from medflow.ml.models import ModelConfig
from medflow.ml.optim import OptimConfig
from medflow.tracking.client import Tracker
from medflow.tracking.models import log_torch_model
from medflow.ml.loop import RunConfig, TrainConfig, TrainData, train
uri, art = sys.argv[1], Path(sys.argv[2])
t2 = time.perf_counter()
tracker = Tracker(uri, art)
t3 = time.perf_counter()
x, y = torch.randn(96, 1, 8, 8), torch.arange(96) % 2
data = TrainData("binary", 2, x[:64], y[:64], x[64:], y[64:])
run = RunConfig(
    ModelConfig.from_schema(arch="cnn", width=4),
    OptimConfig.from_schema(schedule="constant"),
    TrainConfig.from_schema(epochs=2, batch_size=64, patience=10, seed=0),
)
result = train(run, data)
t4 = time.perf_counter()
run_id = tracker.start_run("probe", "probe", {{"stage": "probe"}})
tracker.log_params(run_id, run.to_dict())
tracker.log_figure(run_id, learning_curve_figure(result), "learning_curve.png")
log_torch_model(tracker, run_id, result.model, data.x_val[:2].numpy())
tracker.end_run(run_id)
t5 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "store_open": t3 - t2, "run_records": t5 - t4}}))
sys.stdout.flush()
{end}
"""
_COLD_START = f"""
t0 = time.perf_counter()
import {JOB_IMPORTS}
t1 = time.perf_counter()
"""
_SERVED_START = """
from medflow.runtime.job_server import warm_ups
for warm_up in warm_ups():
    warm_up()
for _ in range(int(sys.argv[3])):  # one job after another, each forked from the warm process
    job = os.fork()
    if job == 0:
        break
    os.waitpid(job, 0)
else:
    sys.exit(0)
t0 = t1 = time.perf_counter()
"""
_SERVED_END = "os._exit(0)"
_MIGRATION_PROBE = """
import json, sys, time
from medflow.tracking.client import Tracker
t0 = time.perf_counter()
Tracker(sys.argv[1])
print(json.dumps({"store_migration": time.perf_counter() - t0}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _wall(cmd: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done


def _probe(code: str, *args: str) -> dict[str, float]:
    _, done = _wall([sys.executable, "-c", code, *args])
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_profile(modules: str) -> dict[str, Any]:
    """``import {modules}`` under ``-X importtime``: total, per top-level package, slowest."""
    _, done = _wall([sys.executable, "-X", "importtime", "-c", f"import {modules}"])
    per_package: dict[str, float] = defaultdict(float)
    per_module: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
        if match:
            seconds = int(match.group(1)) / 1e6
            per_module[match.group(3)] = seconds
            per_package[match.group(3).split(".")[0]] += seconds
    top = sorted(per_package.items(), key=lambda kv: -kv[1])
    slowest = sorted(per_module.items(), key=lambda kv: -kv[1])[:3]
    return {
        "total_s": sum(per_package.values()),
        "by_package": dict(top[:12]) | {"(all others)": sum(v for _, v in top[12:])},
        "slowest_modules_self_s": dict(slowest),
    }


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(PROFILE),
        "--configfile",
        str(CONFIG),
        *args,
    ]


_LOG_TIME = re.compile(r"^\[(\w{3} \w{3}\s+\d+ [\d:]+ \d{4})\]$")


def job_seconds_by_rule(log_text: str) -> dict[str, dict[str, float]]:
    """Per rule: job count and summed wall seconds (start to finish) from Snakemake's log."""
    now = None
    rule = None
    started: dict[str, tuple[str, datetime]] = {}
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0})
    for line in log_text.splitlines():
        if match := _LOG_TIME.match(line):
            now = datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif match := re.match(r"(?:local)?rule (\w+):$", line):
            rule = match.group(1)
        elif (match := re.match(r"\s+jobid: (\d+)$", line)) and rule and now:
            started[match.group(1)] = (rule, now)
            rule = None
        elif (match := re.match(r"Finished jobid: (\d+)", line)) and now:
            name, begin = started.pop(match.group(1), (None, now))
            if name is not None:
                totals[name]["jobs"] += 1
                totals[name]["seconds"] += (now - begin).total_seconds()
    return dict(totals)


def recorded_training_seconds(results: Path) -> dict[str, Any]:
    """Sum of every run's ``epoch_time_s`` history in the run's store, and the run count."""
    from medflow.tracking.client import Tracker

    tracker = Tracker.for_results(results)
    client = tracker.client
    total, runs, epochs = 0.0, 0, 0
    by_stage: dict[str, float] = defaultdict(float)
    precisions: dict[str, set[str]] = defaultdict(set)  # study -> the precision tags seen
    for experiment in client.search_experiments():
        for found in client.search_runs([experiment.experiment_id], max_results=10000):
            history = client.get_metric_history(found.info.run_id, "epoch_time_s")
            runs += 1
            epochs += len(history)
            seconds = sum(m.value for m in history)
            total += seconds
            tags = found.data.tags
            by_stage[tags.get("stage", "?")] += seconds
            if "precision" in tags and "study" in tags:
                precisions[tags["study"]].add(tags["precision"])
    return {
        "train_seconds": total,
        "runs": runs,
        "epochs": epochs,
        "train_seconds_by_stage": dict(by_stage),
        "precisions_by_study": {study: sorted(seen) for study, seen in precisions.items()},
    }


def test_accuracy(results: Path) -> dict[str, dict[str, float]]:
    """Mean test accuracy over seeds per study and refine mode (results/evaluate)."""
    return {
        path.parent.name: {
            mode: stats["accuracy"]["mean"]
            for mode, stats in json.loads(path.read_text())["summary"].items()
        }
        for path in sorted((results / "evaluate").glob("*/metrics.json"))
    }


def fixed_costs(repeats: int, workdir: Path) -> dict[str, Any]:
    """Per job, medians: interpreter, hand-off and cold job interleaved round by round; the
    served jobs after them, forked one after another from one warmed-up process."""
    store = workdir / "probe-store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    costs: dict[str, Any] = {}
    costs["store_migration"] = _probe(_MIGRATION_PROBE, uri)["store_migration"]
    cold_job = _JOB_PROBE.format(start=_COLD_START, end="")
    served_job = _JOB_PROBE.format(start=_SERVED_START, end=_SERVED_END)
    samples: dict[str, list[float]] = defaultdict(list)
    with _warm_job_server(workdir) as handoff:
        for _ in range(repeats):
            samples["interpreter"].append(_wall([sys.executable, "-c", "pass"])[0])
            samples["handoff"].append(handoff())
            for key, seconds in _probe(cold_job, uri, str(store / "art")).items():
                samples[key].append(seconds)
    _, done = _wall([sys.executable, "-c", served_job, uri, str(store / "art"), str(repeats)])
    for line in done.stdout.splitlines():
        for key, seconds in json.loads(line).items() if line.startswith("{") else ():
            samples[f"served_{key}"].append(seconds)
    costs.update({key: statistics.median(values) for key, values in samples.items()})
    del costs["served_imports"]  # none: the server did them
    return costs


@contextmanager
def _warm_job_server(workdir: Path) -> Iterator[Callable[[], float]]:
    """A job server as the Snakefile starts one, once its warm-ups are done; yields a timer of
    one served ``python -m medflow validate``."""
    log = workdir / "job_server.log"
    server = JobServer()
    server.start(log)
    env = {**_env(), ENV_VAR: os.environ.pop(ENV_VAR)}
    command = [sys.executable, "-m", "medflow", "validate", "--config", str(CONFIG)]
    try:
        deadline = time.monotonic() + _SERVER_WARM_TIMEOUT_S
        while f"warm-up {LAST_WARM_UP}" not in log.read_text():
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise RuntimeError(f"the job server did not warm up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

        def handoff() -> float:
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            return time.perf_counter() - started

        yield handoff
        served = log.read_text().count("job ")
        if served == 0:
            raise RuntimeError(f"the job server ran no probe job:\n{log.read_text()[-3000:]}")
    finally:
        server.stop()


def run_workflow(workdir: Path) -> dict[str, Any]:
    run_dir = workdir / "run"
    run_dir.mkdir()
    dag_build, dry = _wall(_snakemake(run_dir, "-n"))
    jobs = int(re.search(r"^total\s+(\d+)", dry.stdout, re.MULTILINE).group(1))
    wall, _ = _wall(_snakemake(run_dir))
    (log,) = (run_dir / ".snakemake" / "log").glob("*.snakemake.log")
    return {
        "test_accuracy": test_accuracy(run_dir / "results"),
        "wall_s": wall,
        "cores": os.cpu_count(),
        "jobs": jobs,
        "dag_build_s": dag_build,
        "job_seconds_by_rule": job_seconds_by_rule(log.read_text()),
        **recorded_training_seconds(run_dir / "results"),
    }


def bench(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medflow-bench-workflow-") as tmp:
        workdir = Path(tmp)
        if options.quick:  # checks the config and one probe, runs no workflow
            load_config(CONFIG)
            interpreter = _wall([sys.executable, "-c", "pass"])[0]
            return {"fixed_costs_s": {"interpreter": interpreter}}
        costs = fixed_costs(3, workdir)
        imports = {"job": import_profile(JOB_IMPORTS), "snakemake": import_profile("snakemake.cli")}
        run = run_workflow(workdir)
    costs["dag_build"] = run["dag_build_s"]
    job_seconds = sum(r["seconds"] for r in run["job_seconds_by_rule"].values())
    untrained_per_job = (job_seconds - run["train_seconds"]) / run["jobs"]
    cores = run["cores"] or 1
    # Every job; run_records only for tracked trainings, migration and DAG once.
    per_job_cold = costs["interpreter"] + costs["imports"] + costs["store_open"]
    per_job = costs["handoff"] + costs["served_store_open"]
    return {
        "config": str(CONFIG.relative_to(REPO)),
        "profile": str(PROFILE.relative_to(REPO)),
        "workflow": run,
        "ratio_wall_over_training": run["wall_s"] / run["train_seconds"],
        "job_seconds": job_seconds,
        "untrained_job_seconds_per_job": untrained_per_job,
        "fixed_costs_s": costs,
        "fixed_per_job_s": per_job,
        "fixed_per_job_cold_s": per_job_cold,
        "import_profiles": imports,
        # With jobs packed on every core, wall ~ (training + jobs x fixed) / cores, so the
        # goal needs training per job >= fixed / (2.0 x cores - 1).
        "training_s_per_job_for_goal": untrained_per_job / max(2.0 * cores - 1, 0.25),
    }


def _dominant(costs: dict[str, float]) -> str:
    return max(
        ("handoff", "served_store_open", "served_run_records"), key=lambda k: costs.get(k, 0.0)
    )


def run(options: Options) -> list[dict[str, Any]]:
    result = bench(options)
    costs = result["fixed_costs_s"]
    if options.quick:
        rows = [row("workflow: snakemake wall / recorded training", None, GOAL, "quick: not run")]
    else:
        packages = ", ".join(
            f"{name} {seconds:.1f}"
            for name, seconds in list(result["import_profiles"]["job"]["by_package"].items())[:4]
        )
        snakemake = result["import_profiles"]["snakemake"]
        module, self_s = next(iter(snakemake["slowest_modules_self_s"].items()))
        run_info = result["workflow"]
        heavy = sorted(run_info["job_seconds_by_rule"].items(), key=lambda kv: -kv[1]["seconds"])
        rules = ", ".join(f"{name} {r['jobs']}x {r['seconds']:.0f}" for name, r in heavy[:4])
        note = (
            f"{run_info['jobs']} jobs on {run_info['cores']} cores, jobs forked from the job "
            f"server, wall {run_info['wall_s']:.0f} s, "
            f"training {run_info['train_seconds']:.1f} s, job seconds {result['job_seconds']:.0f} "
            f"({rules}); per job {result['untrained_job_seconds_per_job']:.1f} s not training; "
            f"once: DAG {costs['dag_build']:.1f} (snakemake import {snakemake['total_s']:.1f}, "
            f"{module} {self_s:.1f} self), migration {costs['store_migration']:.1f}"
        )
        fixed_note = (
            f"served: hand-off {costs['handoff']:.2f} + store open "
            f"{costs['served_store_open']:.2f}, run records {costs['served_run_records']:.2f} "
            f"(dominant: {_dominant(costs)}); cold, a fresh interpreter: "
            f"{result['fixed_per_job_cold_s']:.2f} = interpreter {costs['interpreter']:.2f} + "
            f"imports {costs['imports']:.2f} ({packages}) + store open "
            f"{costs['store_open']:.2f}, run records {costs['run_records']:.2f}"
        )
        rows = [
            row(
                "workflow: snakemake wall / recorded training",
                result["ratio_wall_over_training"],
                GOAL,
                note,
            ),
            row("workflow: fixed seconds per job", result["fixed_per_job_s"], "<= 2.0", fixed_note),
        ]
    write_json(
        "workflow_overhead",
        {"description": __doc__, "quick": options.quick, "goal": GOAL, **result, "rows": rows},
        options,
    )
    return rows
