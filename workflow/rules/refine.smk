rule refine:
    input:
        best=rules.sweep_best.output.best,
        target=target_meta,
        backbones=refine_backbones,
    output:
        # One job per mode and batch of seeds (refine.seeds_per_job); each seed's
        # model.pt, result.json and run_id.txt go to refine/<study>/<mode>/seed<k>/.
        runs=str(LAYOUT.refine_batch("{study}", "{mode}", "{seeds}")),
    log:
        str(LAYOUT.logs() / "refine" / "{study}" / "{mode}_seeds-{seeds}.log"),
    resources:
        gpu=gpu_request,
        mem_mb=4000,
    params:
        cli=medflow_cli,
        seeds=refine_seed_args,
        spec=stage_spec("refine"),
        results=results_root,
    shell:
        "{params.cli} --log {log} refine --study {wildcards.study} --mode {wildcards.mode}"
        " --seeds {params.seeds} --spec {params.spec:q} --results {params.results}"
