# The self-contained HTML report: renders what every earlier job wrote (medflow.stages.report).


rule report:
    input:
        report_inputs,
        analysis_outputs,
    output:
        html=report(
            str(LAYOUT.report()),
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        str(LAYOUT.report_log()),
    params:
        cli=medflow_cli,
        spec=full_spec,
        results=results_root,
    shell:
        "{params.cli} --log {log:q} report --spec {params.spec:q}"
        " --results {params.results:q}"
