rule prepare:
    output:
        **prepared_files("{dataset}"),
    log:
        str(LAYOUT.prepare_log("{dataset}")),
    resources:
        mem_mb=4000,
    params:
        cli=medflow_cli,
        spec=dataset_spec,
        out=prepared_folder,
    shell:
        "{params.cli} --log {log:q} prepare --dataset {wildcards.dataset:q}"
        " --spec {params.spec:q} --out {params.out:q}"
