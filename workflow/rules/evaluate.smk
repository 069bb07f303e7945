rule evaluate:
    input:
        runs=refine_results,
        target=target_meta,
    output:
        metrics=str(LAYOUT.evaluate("{study}") / "metrics.json"),
        confusion=report(
            str(LAYOUT.evaluate("{study}") / "confusion.png"),
            caption="../report/confusion.rst",
            category="Evaluation",
            subcategory="{study}",
        ),
        roc=report(
            str(LAYOUT.evaluate("{study}") / "roc.png"),
            caption="../report/roc.rst",
            category="Evaluation",
            subcategory="{study}",
        ),
    log:
        str(LAYOUT.logs() / "evaluate" / "{study}.log"),
    params:
        cli=medflow_cli,
        spec=stage_spec("evaluate"),
        results=results_root,
    shell:
        "{params.cli} --log {log} evaluate --study {wildcards.study}"
        " --spec {params.spec:q} --results {params.results}"
