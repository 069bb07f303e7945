# What the report shows that is computed on the test split, a model or the Optuna study:
# one job per study, after its evaluation (medflow.stages.analyze).


rule analyze:
    input:
        metrics=str(LAYOUT.evaluate_metrics("{study}")),
        best=str(LAYOUT.sweep_best("{study}")),
        trials=str(LAYOUT.sweep_trials("{study}")),
        target=target_meta,
    output:
        **analysis_files("{study}"),
        figures=directory(str(LAYOUT.analysis_figures("{study}"))),
    log:
        str(LAYOUT.analyze_log("{study}")),
    params:
        cli=medflow_cli,
        spec=stage_spec("analyze"),
        results=results_root,
    shell:
        "{params.cli} --log {log:q} analyze --study {wildcards.study:q}"
        " --spec {params.spec:q} --results {params.results:q}"
