# medflow: data preparation -> pretraining -> Optuna sweeps -> refining -> evaluation -> report.
# Thin on purpose: validation and path helpers live in workflow/rules/common.smk,
# each stage in its own rule file, all logic in the medflow package.
from snakemake.utils import min_version

min_version("9.0")

# No configfile directive: common.smk reads config/config.yaml (the demo) only when no
# --configfile is given, so a study's own config replaces the demo instead of merging with it.


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/classics.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
