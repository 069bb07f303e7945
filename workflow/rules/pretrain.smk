rule pretrain:
    input:
        source=pretrain_source_meta,
    output:
        model=str(LAYOUT.pretrain("{study}", "{activation}") / "model.pt"),
        run_id=str(LAYOUT.pretrain("{study}", "{activation}") / "run_id.txt"),
        result=str(LAYOUT.pretrain("{study}", "{activation}") / "result.json"),
    log:
        str(LAYOUT.logs() / "pretrain" / "{study}" / "{activation}.log"),
    resources:
        gpu=gpu_request,
        mem_mb=6000,
    params:
        cli=medflow_cli,
        spec=stage_spec("pretrain"),
        results=results_root,
    shell:
        "{params.cli} --log {log} pretrain --study {wildcards.study}"
        " --activation {wildcards.activation} --spec {params.spec:q} --results {params.results}"
