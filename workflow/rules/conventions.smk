# Beyond the paper: tables/conventions.tex + figures/conventions.pdf/.png, the settings of config
# `conventions:` under each code convention (trades_instability.conventions_report). A target of its own:
# `paper` does not need it. Reads the per-target aggregation results/aggregate/conventions/.


rule conventions:
    """P(Unstable) and Clean / PGD-10 / AutoAttack / Gap per setting under each convention."""
    input:
        summary=summary_for("conventions"),
        selection=selection_for("conventions"),
    output:
        tex=report(PC.tables_dir + "/conventions.tex", category="Tables", labels={"table": "conventions", "format": "LaTeX"}),
        pdf=report(PC.figures_dir + "/conventions.pdf", category="Figures", subcategory="PDF",
                   labels={"figure": "conventions", "format": "PDF"}),
        png=report(PC.figures_dir + "/conventions.png", category="Figures", subcategory="PNG",
                   labels={"figure": "conventions", "format": "PNG"}),
    params:
        spec=lambda wildcards: config.get("conventions") or {},
        template_dir=_TABLES_TEMPLATES,
    log:
        "logs/tables/conventions.log",
    benchmark:
        "benchmarks/tables/conventions.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    threads: 1
    localrule: True
    conda:
        ENV
    script:
        "../scripts/render_conventions.py"
