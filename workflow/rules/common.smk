# Validation and path helpers shared by every rule file; every path comes from medflow.layout.
import json
import re
import shlex
import sys
from pathlib import Path

from medflow.config.load import workflow_config
from medflow.config.schema import validate_config
from medflow.config.types import MedflowConfig
from medflow.layout import Layout, seed_label
from medflow.runtime.job_server import JobServer
from medflow.tracking.uri import check_store_present

# The demo config/config.yaml applies only when no --configfile is given (--config on top).
DEMO_CONFIG = Path(workflow.basedir) / "config" / "config.yaml"
CONFIGFILES = list(map(str, workflow.overwrite_configfiles))
CONFIG_SOURCE = ", ".join(CONFIGFILES) or str(DEMO_CONFIG)
_raw = workflow_config(
    dict(config), dict(workflow.config_settings.config), CONFIGFILES, DEMO_CONFIG
)
config.clear()
# Fail before any job runs, naming the file and the key; defaults are filled in.
config.update(validate_config(_raw, source=CONFIG_SOURCE))
MEDFLOW = MedflowConfig.from_validated(config, source=CONFIG_SOURCE)
RESULTS = "results"
LAYOUT = Layout(Path(RESULTS))
check_store_present(MEDFLOW.tracking.uri, Path(RESULTS))
# Jobs start as processes forked from one with torch and MLflow imported (4-7 s less each).
JOB_SERVER = JobServer()


onstart:
    if JobServer.wanted(workflow.local_exec):
        JOB_SERVER.start(LAYOUT.job_server_log())


onsuccess:
    JOB_SERVER.stop()


onerror:
    JOB_SERVER.stop()


# The sections of a study each stage reads: a change elsewhere does not re-run it.
STAGE_SECTIONS = {
    "pretrain": ("target", "pretrain", "model", "train"),
    "sweep": ("target", "pretrain", "model", "optim", "train", "sweep"),
    "refine": ("target", "pretrain", "model", "optim", "train", "refine"),
    "evaluate": ("target", "pretrain", "train", "refine", "evaluate"),
    # analyze opens the sweep's Optuna study, named after the sweep's sections: pass them all.
    "analyze": ("target", "pretrain", "model", "optim", "train", "sweep", "refine"),
}


wildcard_constraints:
    dataset="|".join(map(re.escape, sorted(MEDFLOW.datasets))) or "^$",
    study="|".join(map(re.escape, sorted(MEDFLOW.studies))) or "^$",
    activation="[a-z_]+",
    mode="finetune|linear_probe|scratch",
    worker=r"\d+",


def job_tracking():
    """The tracking section minus ui_url: only the report uses it, so changing it
    re-runs no training."""
    return {k: v for k, v in config["tracking"].items() if k != "ui_url"}


def medflow_cli(wildcards):
    """medflow under Snakemake's own interpreter: no activated environment needed."""
    return f"{shlex.quote(sys.executable)} -m medflow"


def results_root(wildcards):
    """The results folder: commands write where its Layout says, which the rules declare."""
    return RESULTS


def prepared_folder(wildcards):
    return str(LAYOUT.prepared(wildcards.dataset))


def prepared_files(dataset):
    """The files of one prepared dataset (the prepare rule's outputs)."""
    return {name: str(path) for name, path in LAYOUT.prepared_files(dataset).items()}


def dataset_spec(wildcards):
    """The validated dataset section as JSON: a change to it re-runs only that dataset."""
    return json.dumps(MEDFLOW.datasets[wildcards.dataset].to_dict(), sort_keys=True)


def classics_inputs(wildcards):
    """The prepared gate datasets the classics stage reads."""
    return {
        gate: str(LAYOUT.prepared_meta(name))
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
    return str(LAYOUT.prepared_meta(MEDFLOW.study(wildcards.study).target))


def pretrain_source_meta(wildcards):
    return str(LAYOUT.prepared_meta(MEDFLOW.study(wildcards.study).pretrain.dataset))


def pretrained_by(wildcards):
    """The study that trains this backbone (MedflowConfig.pretrained_by): this one, or an
    earlier one with the same pretraining, whose files the job then copies."""
    return MEDFLOW.pretrained_by(wildcards.study, wildcards.activation)


def shared_backbone(wildcards):
    """The earlier study's backbone files when this study takes it over; else none."""
    owner = pretrained_by(wildcards)
    if owner == wildcards.study:
        return {}
    return {
        "shared_model": str(LAYOUT.pretrain_model(owner, wildcards.activation)),
        "shared_result": str(LAYOUT.pretrain_result(owner, wildcards.activation)),
    }


def pretrain_gpu_request(wildcards):
    """No GPU for a job that copies another study's backbone."""
    return gpu_request(wildcards) if pretrained_by(wildcards) == wildcards.study else 0


def pretrained_models(wildcards):
    """Every backbone of a pretrained study (sweep trials may pick any activation)."""
    study = MEDFLOW.study(wildcards.study)
    if study.pretrain is None:
        return []
    return [
        str(LAYOUT.pretrain_model(study.name, activation))
        for activation in study.activations
    ]


def refine_backbones(wildcards):
    return [] if wildcards.mode == "scratch" else pretrained_models(wildcards)


def sweep_workers_done(wildcards):
    study = MEDFLOW.study(wildcards.study)
    return [
        str(LAYOUT.sweep_worker_done(study.name, worker))
        for worker in range(study.workers)
    ]


def refine_rule_name(seeds):
    return f"refine_seeds_{seed_label(seeds).replace('-', '_')}"


def inherit_profile_resources(family, rule_name):
    """Resources a profile sets for a rule family (e.g. `refine`) also for one of the rules
    generated for it, unless the profile names that rule itself."""
    # Snakemake applies set-resources from this parsed mapping when it defines a rule.
    overrides = workflow.resource_settings._parsed_overwrite_resources
    if family in overrides and rule_name not in overrides:
        overrides[rule_name] = overrides[family]


def refine_batches():
    """Each batch of seeds some study refines in one job, with those studies' names."""
    batches = {}
    for study in MEDFLOW.studies.values():
        for seeds in study.seed_batches:
            batches.setdefault(seeds, []).append(study.name)
    return batches


def refine_outputs(seeds):
    """What a refine job of ``seeds`` writes for sure: its record, and per seed result.json
    and run_id.txt. model.pt exists only where a best epoch does; checkpoint.pt and the
    resume record must outlive a re-run (Snakemake deletes outputs first), so neither is
    declared."""
    outputs = {
        "record": str(LAYOUT.refine_batch("{study}", "{mode}", seed_label(seeds)))
    }
    for seed in seeds:
        outputs[f"result{seed}"] = str(LAYOUT.refine_result("{study}", "{mode}", seed))
        outputs[f"run_id{seed}"] = str(LAYOUT.refine_run_id("{study}", "{mode}", seed))
    return outputs


def one_of(names):
    """A wildcard constraint matching exactly one of ``names``."""
    return "|".join(re.escape(name) for name in names)


def refine_results(wildcards):
    """Every refine seed's result.json of a study, in all its modes."""
    study = MEDFLOW.study(wildcards.study)
    return [
        str(LAYOUT.refine_result(study.name, mode, seed))
        for mode in study.modes
        for seed in study.seeds
    ]


def analysis_files(study):
    """The JSON files the analyze job of ``study`` writes (its figures go to a folder)."""
    return {
        "baseline": str(LAYOUT.analysis_baseline(study)),
        "importances": str(LAYOUT.analysis_importances(study)),
        "representation": str(LAYOUT.analysis_representation(study)),
    }


def analysis_outputs(wildcards):
    """Every study's analyze outputs, for the report."""
    return [
        path
        for name in sorted(MEDFLOW.studies)
        for path in [*analysis_files(name).values(), str(LAYOUT.analysis_figures(name))]
    ]


def report_inputs(wildcards):
    inputs = [str(LAYOUT.evaluate_metrics(name)) for name in sorted(MEDFLOW.studies)]
    if MEDFLOW.classics.enabled:
        inputs.append(str(LAYOUT.classics_json()))
    return inputs


def full_spec(wildcards):
    return json.dumps(config, sort_keys=True)


def all_targets():
    targets = [str(LAYOUT.prepared_meta(name)) for name in sorted(MEDFLOW.datasets)]
    if MEDFLOW.classics.enabled:
        targets.append(str(LAYOUT.classics_json()))
    targets += [str(LAYOUT.evaluate_metrics(name)) for name in sorted(MEDFLOW.studies)]
    targets.append(str(LAYOUT.report()))
    return targets
