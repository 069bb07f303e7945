"""The tiny DAG on a real single-node SLURM cluster with the repo's SLURM profile: every
job an sbatch job, the sweep workers separate SLURM jobs running at the same time and
pulling from one Optuna study, results as complete as with the local executor."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake
from tests.pipeline_checks import assert_tiny_dag_results
from tests.system.slurm_cluster import SlurmCluster, running_cluster, unavailable_reason
from tests.test_pipeline import load_study, tiny_config, write_config

pytestmark = pytest.mark.slow

PROFILE = REPO / "workflow/profiles/slurm"
SUBMITTED = re.compile(
    r"submitted with SLURM jobid (\d+) \(log: (\S+/slurm_logs/rule_(\w+)/\S+)\)\."
)
RUN_ID = re.compile(r"SLURM run ID: (\S+)")
GPU_RULES = {"pretrain", "sweep_worker", "refine"}


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with running_cluster() as cluster:
        yield cluster


def slurm_config() -> dict:
    """The fewest SLURM jobs that still cover pretrain, two sweep workers, refine with a
    transfer gain, and evaluate: each job costs a Snakemake start and status polling."""
    config = tiny_config(workers=2, n_trials=2, trial_epochs=2)
    study = config["studies"]["tiny"]
    study["sweep"]["space"]["activations"] = ["relu"]  # one pretrain job
    study["refine"] = {"modes": ["finetune", "scratch"], "seeds": [0]}
    return config


def local_cluster_args(cluster: SlurmCluster) -> list[str]:
    """What this machine's cluster needs on top of the profile."""
    mem_mb = min(2000, cluster.memory_mb // cluster.cpus)
    return [
        # Replaces the profile's set-resources: its 4 CPUs per training job and the
        # rules' own mem_mb (up to 6000) need not fit this node.
        "--set-resources",
        *(f"{rule}:mem_mb={mem_mb}" for rule in ("prepare", *sorted(GPU_RULES))),
        "--slurm-status-command",
        "squeue",  # no accounting: sacct would fail silently
        # The plugin checks `init` s after a submission, then waits 10 s longer after
        # each check that finds no job finished: 5 s checks at about 5, 20, 45, 80 s,
        # which suits these 10-45 s jobs best (1 s: 1, 12, 33, 64 s).
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",  # the per-job logs are evidence below
    ]


def jobcomp_records(log: Path) -> dict[int, dict[str, str]]:
    """JobId -> fields of SLURM's jobcomp/filetxt log (one `Key=value ...` line per job)."""
    records = {}
    for line in log.read_text().splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "JobId" in fields:
            records[int(fields["JobId"])] = fields
    return records


@pytest.mark.timeout(900)
def test_tiny_dag_runs_through_slurm_profile_with_parallel_sweep_workers(tmp_path, slurm):
    config = slurm_config()
    configfile = write_config(tmp_path, config)
    started = time.perf_counter()
    result = run_snakemake(
        "results/evaluate/tiny/metrics.json",
        "--profile",
        str(PROFILE),
        "--configfile",
        str(configfile),
        *local_cluster_args(slurm),
        workdir=tmp_path,
    )
    elapsed = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    print(f"tiny DAG through SLURM wall time: {elapsed:.1f}s")

    # Every job went through sbatch: one SLURM job per Snakemake job, none run locally.
    submitted = SUBMITTED.findall(output)
    logs = {int(job): Path(log) for job, log, _ in submitted}
    rules = {int(job): rule_family(rule) for job, _, rule in submitted}
    assert Counter(rules.values()) == {
        "prepare": 2,
        "pretrain": 1,
        "sweep_init": 1,
        "sweep_worker": 2,
        "sweep_best": 1,
        "refine": 2,
        "evaluate": 1,
    }, output[-6000:]
    assert all(log.name == f"{job}.log" and log.is_file() for job, log in logs.items())
    (run_id,) = set(RUN_ID.findall(output))
    records = jobcomp_records(slurm.jobcomp_log)
    defaults = yaml.safe_load((PROFILE / "config.yaml").read_text())["default-resources"]
    runtime = dict(item.split("=", 1) for item in defaults)["runtime"]
    for job in logs:
        assert records[job]["JobState"] == "COMPLETED", records[job]
        assert records[job]["Name"] == run_id
        # The profile's defaults reached sbatch; no partition set: the cluster's default.
        assert (records[job]["TimeLimit"], records[job]["Partition"]) == (runtime, slurm.partition)

    # The two sweep workers ran at the same time as separate SLURM jobs.
    first, second = (records[job] for job, rule in rules.items() if rule == "sweep_worker")
    assert first["StartTime"] < second["EndTime"] and second["StartTime"] < first["EndTime"]

    assert_tiny_dag_results(tmp_path, config, load_study(tmp_path), report=False)


def rule_family(rule: str) -> str:
    """refine's rules are generated per batch of seeds (refine_seeds_0_1): family refine."""
    return "refine" if rule.startswith("refine_seeds_") else rule


def test_slurm_profile_asks_one_gpu_per_training_job_when_gpus_are_offered(tmp_path):
    """The profile as shipped, dry-run with `--resources gpu=2`: the training rules get
    gpu=1 (sbatch --gpus=1), the other rules none; every job has a runtime and CPUs."""
    configfile = write_config(tmp_path, tiny_config())
    args = ("-n", "--profile", str(PROFILE), "--configfile", str(configfile))
    result = run_snakemake(*args, "--resources", "gpu=2", workdir=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    found = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout, re.M)
    jobs = [(rule_family(rule), resources) for rule, resources in found]
    assert {rule for rule, _ in jobs} >= GPU_RULES | {"prepare", "evaluate"}
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]
    for rule, resources in jobs:
        if rule in profile:  # set-resources reach the generated refine rules too
            assert f"runtime={profile[rule]['runtime']}," in resources, (rule, resources)
        gpu = re.search(r"\bgpu=(\d+)", resources)
        assert (int(gpu[1]) if gpu else 0) == (rule in GPU_RULES), rule
        assert "runtime=" in resources and "cpus_per_task=" in resources, rule
