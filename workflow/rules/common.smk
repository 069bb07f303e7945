# Validation and path helpers shared by every rule file.
import json

from medflow.config import MedflowConfig, validate_config

# Fail before any job runs, naming the file and the key; defaults are filled in.
CONFIG_SOURCE = ", ".join(map(str, workflow.configfiles)) or "config"
config.update(validate_config(config, source=CONFIG_SOURCE))
MEDFLOW = MedflowConfig.from_validated(config, source=CONFIG_SOURCE)
RESULTS = "results"


wildcard_constraints:
    dataset="|".join(sorted(MEDFLOW.datasets)) or "^$",


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
        {"classics": config["classics"], "tracking": config["tracking"]}, sort_keys=True
    )


def all_targets():
    targets = [prepared_files(name)["meta"] for name in sorted(MEDFLOW.datasets)]
    if MEDFLOW.classics.enabled:
        targets.append(f"{RESULTS}/classics/perceptron.json")
    return targets
