rule classics:
    input:
        unpack(classics_inputs),
    output:
        json=str(LAYOUT.classics_json()),
    log:
        str(LAYOUT.classics_log()),
    resources:
        mem_mb=2000,
    params:
        cli=medflow_cli,
        spec=classics_spec,
        results=results_root,
    shell:
        "{params.cli} --log {log:q} classics --spec {params.spec:q}"
        " --results {params.results:q} --out {output.json:q}"
