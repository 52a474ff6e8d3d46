# Tables 1-7 of the paper and the cell-by-cell comparison with the published numbers.
# Reads only aggregation outputs (summary.csv, selection.json) and the `tables:` section of the config;
# logic in trades_instability.tables, LaTeX layout in workflow/templates/*.tex.j2.
#
# Inside the full Snakefile (common.smk included first) a table reads the per-target aggregation
# results/aggregate/{table}/summary.csv (only the settings that table names, so that
# `snakemake tables/table3.tex` trains just what Table 3 needs); included on its own it reads the
# global results/summary.csv. The comparison reads the aggregation of every table's settings.
import os as _tables_os
from pathlib import Path as _TablesPath

_TABLES_RESULTS = str(config.get("results_dir", "results")).rstrip("/")
_TABLES_DIR = str(config.get("tables_dir", "tables")).rstrip("/")


def _tables_template_dir():
    """workflow/templates, found from this rule file's directory (works whatever the working dir)."""
    base = workflow.current_basedir
    try:
        base = base.get_path_or_uri(secret_free=True)
    except TypeError:  # older snakemake signature
        base = base.get_path_or_uri()
    return str(_TablesPath(base).parent / "templates")


_TABLES_TEMPLATES = _tables_template_dir()


def _table_spec(wildcards):
    specs = config.get("tables") or {}
    if wildcards.table not in specs:
        raise ValueError(f"config key 'tables.{wildcards.table}' is missing")
    return specs[wildcards.table]


def _aggregation_for(target):
    """summary.csv + selection.json covering `target` (per-target ones when common.smk provides them)."""
    if "summary_for" in globals() and "selection_for" in globals():
        return {"summary": summary_for(target), "selection": selection_for(target)}
    return {"summary": _tables_os.path.join(_TABLES_RESULTS, "summary.csv"),
            "selection": _tables_os.path.join(_TABLES_RESULTS, "selection.json")}


def _table_inputs(wildcards):
    return _aggregation_for(wildcards.table)


rule table:
    """Render {tables_dir}/{table}.tex (booktabs LaTeX) from summary.csv and selection.json."""
    input:
        unpack(_table_inputs),
    output:
        tex=report(_TABLES_DIR + "/{table}.tex", category="Tables", labels={"table": "{table}", "format": "LaTeX"}),
    params:
        spec=_table_spec,
        template_dir=_TABLES_TEMPLATES,
    log:
        "logs/tables/{table}.log",
    benchmark:
        "benchmarks/tables/{table}.tsv"
    wildcard_constraints:
        table="table[1-7]",
    resources:
        mem_mb=1000,
        runtime=10,
    threads: 1
    localrule: True
    conda:
        "../../envs/trades.yaml"
    script:
        "../scripts/render_table.py"


rule comparison:
    """Every published cell of Tables 1-7 beside the reproduced one (LaTeX + CSV)."""
    input:
        **_aggregation_for("comparison"),
    output:
        tex=report(_TABLES_DIR + "/comparison.tex", category="Tables",
                   labels={"table": "comparison", "format": "LaTeX"}),
        csv=report(_TABLES_DIR + "/comparison.csv", category="Tables",
                   labels={"table": "comparison", "format": "CSV"}),
    params:
        specs=lambda wildcards: config.get("tables") or {},
        template_dir=_TABLES_TEMPLATES,
    log:
        "logs/tables/comparison.log",
    benchmark:
        "benchmarks/tables/comparison.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    threads: 1
    localrule: True
    conda:
        "../../envs/trades.yaml"
    script:
        "../scripts/render_comparison.py"
