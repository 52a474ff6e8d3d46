# Tables 1-7 of the paper and the cell-by-cell comparison with the published numbers.
# Reads only aggregation outputs (summary.csv, selection.json) and the `tables:` section of the config;
# logic in trades_instability.report.tables (which builder: report/registry.py), LaTeX layout in
# workflow/templates/*.tex.j2; the comparison in trades_instability.report.comparison. The code of each table
# (its builder's module, its template, the shared _table/_macros templates) is an input of its job, so that
# editing it reruns exactly the tables it makes (W.code_of).
#
# A table reads the per-target aggregation results/aggregate/{table}/summary.csv (only the settings
# that table names, so that `snakemake tables/table3.tex` trains just what Table 3 needs). The
# comparison reads the aggregation of every table's settings (results/aggregate/comparison/).


rule table:
    """Render {tables_dir}/{table}.tex (booktabs LaTeX) from summary.csv and selection.json."""
    input:
        unpack(W.table_inputs),
    output:
        tex=report(
            W.table_file("{table}.tex"),
            category="Tables",
            labels={"table": "{table}", "format": "LaTeX"},
        ),
    log:
        "logs/tables/{table}.log",
    benchmark:
        "benchmarks/tables/{table}.tsv"
    wildcard_constraints:
        table=W.artifact_names("table"),
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=W.table_spec,
    script:
        "../scripts/render_table.py"


rule comparison:
    """Every published cell of Tables 1-7 beside the reproduced one (LaTeX + CSV)."""
    input:
        **W.report_inputs("comparison"),
    output:
        tex=report(
            W.table_file("comparison.tex"),
            category="Tables",
            labels={"table": "comparison", "format": "LaTeX"},
        ),
        csv=report(
            W.table_file("comparison.csv"),
            category="Tables",
            labels={"table": "comparison", "format": "CSV"},
        ),
    log:
        "logs/tables/comparison.log",
    benchmark:
        "benchmarks/tables/comparison.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        specs=lambda wildcards: config.get("tables") or {},
    script:
        "../scripts/render_comparison.py"
