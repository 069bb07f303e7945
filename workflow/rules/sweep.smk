rule sweep_init:
    input:
        target=target_meta,
    output:
        parent=str(LAYOUT.sweep("{study}") / "parent_run_id.txt"),
    log:
        str(LAYOUT.logs() / "sweep" / "{study}" / "init.log"),
    params:
        cli=medflow_cli,
        spec=stage_spec("sweep"),
        results=results_root,
    shell:
        "{params.cli} --log {log} sweep-init --study {wildcards.study}"
        " --spec {params.spec:q} --results {params.results}"


rule sweep_worker:
    input:
        parent=rules.sweep_init.output.parent,
        target=target_meta,
        backbones=pretrained_models,
    output:
        done=touch(str(LAYOUT.sweep("{study}") / "workers" / "{worker}.done")),
    log:
        str(LAYOUT.logs() / "sweep" / "{study}" / "worker_{worker}.log"),
    resources:
        gpu=gpu_request,
        mem_mb=4000,
    params:
        cli=medflow_cli,
        spec=stage_spec("sweep"),
        results=results_root,
    shell:
        "{params.cli} --log {log} sweep-worker --study {wildcards.study} --worker {wildcards.worker}"
        " --spec {params.spec:q} --results {params.results}"


rule sweep_best:
    input:
        workers=sweep_workers_done,
    output:
        best=str(LAYOUT.sweep("{study}") / "best_params.json"),
        trials=report(
            str(LAYOUT.sweep("{study}") / "trials.csv"),
            caption="../report/trials.rst",
            category="Sweep",
        ),
    log:
        str(LAYOUT.logs() / "sweep" / "{study}" / "best.log"),
    params:
        cli=medflow_cli,
        spec=stage_spec("sweep"),
        results=results_root,
    shell:
        "{params.cli} --log {log} sweep-best --study {wildcards.study}"
        " --spec {params.spec:q} --results {params.results}"
