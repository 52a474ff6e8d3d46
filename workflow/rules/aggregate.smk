# Aggregation (local, CPU): run.json + epochs.csv + eval_*.json of finished runs ->
#   results/summary.csv, results/selection.json                       (all settings; rule aggregate)
#   results/aggregate/{target}/summary.csv, selection.json            (only the settings that table /
#                                                                      figure {target} names; rule aggregate_target)
# Selection rules: trades_instability.aggregate.RULES (also written into selection.json).


rule aggregate:
    """summary.csv (one row per run) and selection.json (Regular / Unstable / self-healing seeds) of all settings."""
    input:
        **aggregate_inputs(SETTINGS),
    output:
        summary=report(f"{R}/summary.csv", category="Results", labels={"file": "summary.csv"}),
        selection=report(f"{R}/selection.json", category="Results", labels={"file": "selection.json"}),
    params:
        runs=aggregate_runs(SETTINGS),
        threshold=PC.selection_threshold(),
    log:
        "logs/aggregate/all.log",
    benchmark:
        "benchmarks/aggregate/all.tsv"
    localrule: True
    conda:
        ENV
    script:
        "../scripts/aggregate.py"


rule aggregate_target:
    """summary.csv and selection.json restricted to the settings one table / figure reads."""
    input:
        unpack(lambda w: aggregate_inputs(target_settings(w.target))),
    output:
        summary=f"{R}/aggregate/{{target}}/summary.csv",
        selection=f"{R}/aggregate/{{target}}/selection.json",
    params:
        runs=lambda w: aggregate_runs(target_settings(w.target)),
        threshold=PC.selection_threshold(),
    log:
        "logs/aggregate/{target}.log",
    benchmark:
        "benchmarks/aggregate/{target}.tsv"
    localrule: True
    conda:
        ENV
    script:
        "../scripts/aggregate.py"
