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


def all_targets():
    return [prepared_files(name)["meta"] for name in sorted(MEDFLOW.datasets)]
