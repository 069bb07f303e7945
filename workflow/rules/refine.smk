rule refine:
    input:
        best=rules.sweep_best.output.best,
        target=target_meta,
        backbones=refine_backbones,
    output:
        result=str(LAYOUT.refine("{study}", "{mode}", "{seed}") / "result.json"),
        run_id=str(LAYOUT.refine("{study}", "{mode}", "{seed}") / "run_id.txt"),
    log:
        str(LAYOUT.logs() / "refine" / "{study}" / "{mode}_seed{seed}.log"),
    resources:
        gpu=gpu_request,
        mem_mb=4000,
    params:
        cli=medflow_cli,
        spec=stage_spec("refine"),
        results=results_root,
    shell:
        "{params.cli} --log {log} refine --study {wildcards.study} --mode {wildcards.mode}"
        " --seed {wildcards.seed} --spec {params.spec:q} --results {params.results}"
