# Beyond the paper, targets of their own (`paper` does not need them): side-by-side comparisons of the same
# settings under each value of one run-config key (trades_instability.report.grids.GRIDS):
#   conventions  tables/conventions.tex + figures/conventions.pdf/.png  (config `conventions:`, key convention)
#   crossarch    tables/crossarch.tex + figures/crossarch.pdf/.png      (config `crossarch:`, key arch)
# Each reads its per-target aggregation results/aggregate/{grid}/.


rule conventions:
    """P(Unstable) and Clean / PGD-10 / AutoAttack / Gap per setting under each code convention."""
    input:
        W.grid_targets("conventions"),
    localrule: True


rule crossarch:
    """P(Unstable) and Clean / PGD-10 / AutoAttack / Gap of the default setting on each architecture."""
    input:
        W.grid_targets("crossarch"),
    localrule: True


rule grid_report:
    """Table and figure of one side-by-side comparison (conventions, crossarch)."""
    input:
        unpack(W.grid_inputs),
    output:
        tex=report(W.table_file("{grid}.tex"), category="Tables", labels={"table": "{grid}", "format": "LaTeX"}),
        pdf=report(
            W.figure_file("{grid}.pdf"),
            category="Figures",
            subcategory="PDF",
            labels={"figure": "{grid}", "format": "PDF"},
        ),
        png=report(
            W.figure_file("{grid}.png"),
            category="Figures",
            subcategory="PNG",
            labels={"figure": "{grid}", "format": "PNG"},
        ),
    log:
        "logs/tables/{grid}.log",
    benchmark:
        "benchmarks/tables/{grid}.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        spec=lambda wildcards: config.get(wildcards.grid) or {},
    script:
        "../scripts/render_grid.py"
