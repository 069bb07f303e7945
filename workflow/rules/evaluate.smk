rule evaluate:
    input:
        results=refine_results,
        target=target_meta,
    output:
        metrics=str(LAYOUT.evaluate_metrics("{study}")),
        confusion=report(
            str(LAYOUT.evaluate_confusion("{study}")),
            caption="../report/confusion.rst",
            category="Evaluation",
            subcategory="{study}",
        ),
        roc=report(
            str(LAYOUT.evaluate_roc("{study}")),
            caption="../report/roc.rst",
            category="Evaluation",
            subcategory="{study}",
        ),
        reliability=report(
            str(LAYOUT.evaluate_reliability("{study}")),
            caption="../report/reliability.rst",
            category="Evaluation",
            subcategory="{study}",
        ),
        model_card=str(LAYOUT.evaluate_model_card("{study}")),
        predictions=directory(str(LAYOUT.evaluate_predictions("{study}"))),
    log:
        str(LAYOUT.evaluate_log("{study}")),
    params:
        cli=medflow_cli,
        spec=stage_spec("evaluate"),
        results=results_root,
    shell:
        "{params.cli} --log {log:q} evaluate --study {wildcards.study:q}"
        " --spec {params.spec:q} --results {params.results:q}"
