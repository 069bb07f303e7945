# One rule per batch of seeds (refine.seeds_per_job), so that each job declares every
# seed's files; a study and mode pick the job through the wildcards. A profile's
# set-resources for `refine` applies to each of them.
for seeds, studies in refine_batches().items():
    inherit_profile_resources("refine", refine_rule_name(seeds))

    rule:
        name:
            refine_rule_name(seeds)
        input:
            best=str(LAYOUT.sweep_best("{study}")),
            target=target_meta,
            backbones=refine_backbones,
        output:
            **refine_outputs(seeds),
        log:
            str(LAYOUT.refine_log("{study}", "{mode}", seed_label(seeds))),
        wildcard_constraints:
            study=one_of(studies),
        resources:
            gpu=gpu_request,
            mem_mb=4000,
        params:
            cli=medflow_cli,
            seeds=" ".join(map(str, seeds)),
            spec=stage_spec("refine"),
            results=results_root,
        shell:
            "{params.cli} --log {log:q} refine --study {wildcards.study:q}"
            " --mode {wildcards.mode:q} --seeds {params.seeds}"
            " --spec {params.spec:q} --results {params.results:q}"
