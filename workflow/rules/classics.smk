rule classics:
    input:
        unpack(classics_inputs),
    output:
        json=f"{RESULTS}/classics/perceptron.json",
    log:
        f"{RESULTS}/logs/classics.log",
    resources:
        mem_mb=2000,
    params:
        cli=medflow_cli,
        spec=classics_spec,
        results=results_root,
    shell:
        "{params.cli} --log {log} classics --spec {params.spec:q}"
        " --results {params.results} --out {output.json}"
