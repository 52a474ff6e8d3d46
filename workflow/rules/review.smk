# Beyond the paper, a target of its own (`paper` does not need it): the ICLR 2025 reviewers' questions answered
# by experiment (trades_instability.report.review): {tables_dir}/review.tex (+ review.csv, one line per row) and
# {figures_dir}/review.pdf (+ .png), from the per-target aggregation results/aggregate/review/ and the epochs.csv
# of every run the config's `review:` block names.


rule review:
    """Seed sources, beta 6, PGD-AT / ALP controls, GradAlign beside FOSC and SGCS, noise variants."""
    input:
        W.artifact_files("review") if W.reviews else [],
    localrule: True


rule review_report:
    """The review's table, CSV and figure."""
    input:
        **W.report_inputs("review"),
        epochs=W.run_files(PC.review_settings(), "epochs.csv"),
    output:
        tex=report(W.table_file("review.tex"), category="Tables", labels={"table": "review", "format": "LaTeX"}),
        csv=report(W.table_file("review.csv"), category="Tables", labels={"table": "review", "format": "CSV"}),
        pdf=report(
            W.figure_file("review.pdf"),
            category="Figures",
            subcategory="PDF",
            labels={"figure": "review", "format": "PDF"},
        ),
        png=report(
            W.figure_file("review.png"),
            category="Figures",
            subcategory="PNG",
            labels={"figure": "review", "format": "PNG"},
        ),
    log:
        "logs/tables/review.log",
    benchmark:
        "benchmarks/tables/review.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        spec=lambda wildcards: config.get("review") or {},
    script:
        "../scripts/render_review.py"
