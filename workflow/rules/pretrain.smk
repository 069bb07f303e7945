rule pretrain:
    input:
        unpack(shared_backbone),
        source=pretrain_source_meta,
    output:
        # checkpoint.pt is not declared: Snakemake would delete it before a re-run resumes.
        model=str(LAYOUT.pretrain_model("{study}", "{activation}")),
        run_id=str(LAYOUT.pretrain_run_id("{study}", "{activation}")),
        result=str(LAYOUT.pretrain_result("{study}", "{activation}")),
    log:
        str(LAYOUT.pretrain_log("{study}", "{activation}")),
    resources:
        gpu=pretrain_gpu_request,
        mem_mb=6000,
    params:
        cli=medflow_cli,
        spec=stage_spec("pretrain"),
        pretrained_by=pretrained_by,
        results=results_root,
    shell:
        "{params.cli} --log {log:q} pretrain --study {wildcards.study:q}"
        " --activation {wildcards.activation:q} --spec {params.spec:q}"
        " --results {params.results:q} --pretrained-by {params.pretrained_by:q}"
