rule prepare:
    output:
        **prepared_files("{dataset}"),
    log:
        "results/logs/prepare/{dataset}.log",
    resources:
        mem_mb=4000,
    params:
        cli=medflow_cli,
        spec=dataset_spec,
        out=prepared_folder,
    shell:
        "{params.cli} --log {log} prepare --dataset {wildcards.dataset}"
        " --spec {params.spec:q} --out {params.out}"
