rule sweep_init:
    input:
        target=target_meta,
    output:
        parent=str(LAYOUT.sweep_parent_run_id("{study}")),
    log:
        str(LAYOUT.sweep_log("{study}", "init")),
    params:
        cli=medflow_cli,
        spec=stage_spec("sweep"),
        results=results_root,
    shell:
        "{params.cli} --log {log:q} sweep-init --study {wildcards.study:q}"
        " --spec {params.spec:q} --results {params.results:q}"


rule sweep_worker:
    input:
        parent=rules.sweep_init.output.parent,
        target=target_meta,
        backbones=pretrained_models,
    output:
        done=touch(str(LAYOUT.sweep_worker_done("{study}", "{worker}"))),
    log:
        str(LAYOUT.sweep_worker_log("{study}", "{worker}")),
    resources:
        gpu=gpu_request,
        mem_mb=4000,
    params:
        cli=medflow_cli,
        spec=stage_spec("sweep"),
        results=results_root,
    shell:
        "{params.cli} --log {log:q} sweep-worker --study {wildcards.study:q}"
        " --worker {wildcards.worker:q} --spec {params.spec:q} --results {params.results:q}"


rule sweep_best:
    input:
        workers=sweep_workers_done,
    output:
        best=str(LAYOUT.sweep_best("{study}")),
        trials=report(
            str(LAYOUT.sweep_trials("{study}")),
            caption="../report/trials.rst",
            category="Sweep",
        ),
        cells=str(LAYOUT.sweep_cells("{study}")),
    log:
        str(LAYOUT.sweep_log("{study}", "best")),
    params:
        cli=medflow_cli,
        spec=stage_spec("sweep"),
        results=results_root,
    shell:
        "{params.cli} --log {log:q} sweep-best --study {wildcards.study:q}"
        " --spec {params.spec:q} --results {params.results:q}"
