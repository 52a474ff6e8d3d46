# Aggregation (local, CPU): run.json + epochs.csv + eval_*.json of finished runs ->
#   results/summary.csv, results/selection.json                       (all settings; rule aggregate)
#   results/aggregate/{target}/summary.csv, selection.json            (only the settings that table /
#                                                                      figure {target} names; rule aggregate_target)
# Selection rules: trades_instability.aggregate.RULES (also written into selection.json).


rule aggregate:
    """summary.csv (one row per run) and selection.json (Regular / Unstable / self-healing seeds) of all settings."""
    input:
        **W.aggregate_inputs(SETTINGS),
    output:
        summary=report(W.summary_for(), category="Results", labels={"file": "summary.csv"}),
        selection=report(W.selection_for(), category="Results", labels={"file": "selection.json"}),
    log:
        "logs/aggregate/all.log",
    benchmark:
        "benchmarks/aggregate/all.tsv"
    localrule: True
    conda:
        ENV
    params:
        runs=W.aggregate_runs(SETTINGS),
        threshold=PC.selection_threshold(),
    script:
        "../scripts/aggregate.py"


rule aggregate_target:
    """summary.csv and selection.json restricted to the settings one table / figure reads."""
    input:
        unpack(lambda w: W.aggregate_inputs(W.target_settings(w.target))),
    output:
        summary=W.summary_for("{target}"),
        selection=W.selection_for("{target}"),
    log:
        "logs/aggregate/{target}.log",
    benchmark:
        "benchmarks/aggregate/{target}.tsv"
    localrule: True
    conda:
        ENV
    params:
        runs=lambda w: W.aggregate_runs(W.target_settings(w.target)),
        threshold=PC.selection_threshold(),
    script:
        "../scripts/aggregate.py"
