# Beyond the paper: tables/conventions.tex + figures/conventions.pdf/.png, the settings of config
# `conventions:` under each code convention (trades_instability.conventions_report). A target of its own:
# `paper` does not need it. Reads the per-target aggregation results/aggregate/conventions/.


rule conventions:
    """P(Unstable) and Clean / PGD-10 / AutoAttack / Gap per setting under each convention."""
    input:
        **W.aggregation_of("conventions"),
    output:
        tex=report(
            W.table_file("conventions.tex"), category="Tables", labels={"table": "conventions", "format": "LaTeX"}
        ),
        pdf=report(
            W.figure_file("conventions.pdf"),
            category="Figures",
            subcategory="PDF",
            labels={"figure": "conventions", "format": "PDF"},
        ),
        png=report(
            W.figure_file("conventions.png"),
            category="Figures",
            subcategory="PNG",
            labels={"figure": "conventions", "format": "PNG"},
        ),
    log:
        "logs/tables/conventions.log",
    benchmark:
        "benchmarks/tables/conventions.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        spec=lambda wildcards: config.get("conventions") or {},
        template_dir=W.templates_dir,
    script:
        "../scripts/render_conventions.py"
