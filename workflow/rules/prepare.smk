# update(): Snakemake keeps the earlier preparation while the job runs and puts it back
# if the job fails, so a config change that cannot be prepared loses nothing.
rule prepare:
    output:
        **{name: update(path) for name, path in prepared_files("{dataset}").items()},
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
