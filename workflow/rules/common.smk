# Validation and path helpers shared by every rule file.
import json
import shlex
import sys
from pathlib import Path

from medflow.config.types import MedflowConfig, validate_config
from medflow.layout import Layout, seed_label

# Fail before any job runs, naming the file and the key; defaults are filled in.
CONFIG_SOURCE = ", ".join(map(str, workflow.configfiles)) or "config"
config.update(validate_config(config, source=CONFIG_SOURCE))
MEDFLOW = MedflowConfig.from_validated(config, source=CONFIG_SOURCE)
RESULTS = "results"
LAYOUT = Layout(Path(RESULTS))
# The sections of a study each stage reads: a change elsewhere does not re-run it.
STAGE_SECTIONS = {
    "pretrain": ("target", "pretrain", "model", "train"),
    "sweep": ("target", "pretrain", "model", "optim", "train", "sweep"),
    "refine": ("target", "pretrain", "model", "optim", "train", "refine"),
    "evaluate": ("target", "pretrain", "train", "refine", "evaluate"),
}


wildcard_constraints:
    dataset="|".join(sorted(MEDFLOW.datasets)) or "^$",
    study="|".join(sorted(MEDFLOW.studies)) or "^$",
    activation="[a-z_]+",
    mode="finetune|linear_probe|scratch",
    seeds=r"\d+(-\d+)*",
    worker=r"\d+",


def job_tracking():
    """The tracking section minus ui_url: only the report uses it, so changing it
    re-runs no training."""
    return {k: v for k, v in config["tracking"].items() if k != "ui_url"}


def medflow_cli(wildcards):
    """medflow under Snakemake's own interpreter: no activated environment needed."""
    return f"{shlex.quote(sys.executable)} -m medflow"


def results_root(wildcards):
    """The results folder, for commands that derive their paths (and MLflow store) from it."""
    return RESULTS


def prepared_folder(wildcards):
    return f"{RESULTS}/data/{wildcards.dataset}"


def prepared_files(dataset):
    """The files of one prepared dataset (the prepare rule's outputs)."""
    folder = f"{RESULTS}/data/{dataset}"
    return {
        "meta": f"{folder}/meta.json",
        "train": f"{folder}/train.safetensors",
        "val": f"{folder}/val.safetensors",
        "test": f"{folder}/test.safetensors",
    }


def dataset_spec(wildcards):
    """The validated dataset section as JSON: a change to it re-runs only that dataset."""
    return json.dumps(MEDFLOW.datasets[wildcards.dataset].to_dict(), sort_keys=True)


def classics_inputs(wildcards):
    """The prepared gate datasets the classics stage reads."""
    return {
        gate: prepared_files(name)["meta"]
        for gate, name in MEDFLOW.classics.datasets.items()
    }


def classics_spec(wildcards):
    return json.dumps(
        {"classics": config["classics"], "tracking": job_tracking()}, sort_keys=True
    )


def stage_spec(stage):
    """Params function: the study sections ``stage`` reads, plus tracking, as JSON."""

    def spec(wildcards):
        study = config["studies"][wildcards.study]
        sections = {key: study[key] for key in STAGE_SECTIONS[stage]}
        return json.dumps(
            {"study": sections, "tracking": job_tracking()}, sort_keys=True
        )

    return spec


def gpu_request(wildcards):
    """One GPU per training job where the profile offers GPUs (--resources gpu=N), else none."""
    offered = workflow.global_resources.get("gpu").value
    return 1 if offered else 0


def target_meta(wildcards):
    return prepared_files(MEDFLOW.study(wildcards.study).target)["meta"]


def pretrain_source_meta(wildcards):
    return prepared_files(MEDFLOW.study(wildcards.study).pretrain.dataset)["meta"]


def pretrained_models(wildcards):
    """Every backbone of a pretrained study (sweep trials may pick any activation)."""
    study = MEDFLOW.study(wildcards.study)
    if study.pretrain is None:
        return []
    return [
        str(LAYOUT.pretrain(study.name, activation) / "model.pt")
        for activation in study.activations
    ]


def refine_backbones(wildcards):
    return [] if wildcards.mode == "scratch" else pretrained_models(wildcards)


def sweep_workers_done(wildcards):
    study = MEDFLOW.study(wildcards.study)
    folder = LAYOUT.sweep(study.name) / "workers"
    return [str(folder / f"{worker}.done") for worker in range(study.workers)]


def refine_results(wildcards):
    """The records of every refine job of a study: per mode, one per batch of seeds."""
    study = MEDFLOW.study(wildcards.study)
    return [
        str(LAYOUT.refine_batch(study.name, mode, seed_label(seeds)))
        for mode in study.modes
        for seeds in study.seed_batches
    ]


def refine_seed_args(wildcards):
    """The job's seeds as command-line words: "0-1-2" -> "0 1 2"."""
    return wildcards.seeds.replace("-", " ")


def report_inputs(wildcards):
    inputs = [
        str(LAYOUT.evaluate(name) / "metrics.json") for name in sorted(MEDFLOW.studies)
    ]
    if MEDFLOW.classics.enabled:
        inputs.append(str(LAYOUT.classics_json()))
    return inputs


def full_spec(wildcards):
    return json.dumps(config, sort_keys=True)


def all_targets():
    targets = [prepared_files(name)["meta"] for name in sorted(MEDFLOW.datasets)]
    if MEDFLOW.classics.enabled:
        targets.append(str(LAYOUT.classics_json()))
    targets += [
        str(LAYOUT.evaluate(name) / "metrics.json") for name in sorted(MEDFLOW.studies)
    ]
    targets.append(str(LAYOUT.report()))
    return targets
