rule report:
    input:
        report_inputs,
    output:
        html=report(
            str(LAYOUT.report()),
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        str(LAYOUT.logs() / "report.log"),
    params:
        cli=medflow_cli,
        spec=full_spec,
        results=results_root,
    shell:
        "{params.cli} --log {log} report --spec {params.spec:q}"
        " --results {params.results} --out {output.html}"
