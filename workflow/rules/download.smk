# Datasets: one local job per dataset a scheduled job reads (not synthetic), before any of them. Under
# SLURM it runs on the login node (compute nodes often have no network); training and evaluation jobs
# never download (every run config says download: false).
#
# Output: results/datasets/{dataset}.json, a small verification record (folder, URL, md5, time), read by
# train / evaluate / landscape as ancient() input (W.data_input explains why: neither moving the data nor
# the clone, nor the record's time, reruns a finished run). data_root and the fetch switch (config
# download) come from the environment ($TRADES_DATA_ROOT, $TRADES_FETCH), not params: nothing may rerun
# this rule once its record exists.


rule download:
    """Fetch a missing dataset (config download: true) and verify it (md5) below data_root; runs locally."""
    output:
        W.results_file("datasets", "{dataset}.json"),
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "benchmarks/download/{dataset}.tsv"
    localrule: True
    conda:
        ENV
    shell:
        LIBRARY_ENV + 'python -m trades_instability download {wildcards.dataset} --data-root "$TRADES_DATA_ROOT" '
        "--record {output} $TRADES_FETCH > {log} 2>&1"
