rule evaluate:
    input:
        runs=refine_results,
        target=target_meta,
    output:
        metrics=str(LAYOUT.evaluate("{study}") / "metrics.json"),
    log:
        str(LAYOUT.logs() / "evaluate" / "{study}.log"),
    params:
        cli=medflow_cli,
        spec=stage_spec("evaluate"),
        results=results_root,
    shell:
        "{params.cli} --log {log} evaluate --study {wildcards.study}"
        " --spec {params.spec:q} --results {params.results}"
