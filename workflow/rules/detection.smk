# FOSC as a detector of Unstable runs (beyond the paper; trades_instability.detection):
#   {tables_dir}/detection.tex (+ detection.csv, one row per run) and {figures_dir}/detection.pdf (+ .png)
# from the classified runs of the settings in config `detection.settings` (default: all). Reads the
# per-target aggregation results/aggregate/detection/ and epochs.csv of every run of those settings.


rule detection:
    """How well peak validation FOSC separates Unstable from Regular runs; the calibrated threshold."""
    input:
        summary=summary_for("detection"),
        selection=selection_for("detection"),
        epochs=run_files(PC.detection_settings(), "epochs.csv"),
    output:
        tex=report(f"{PC.tables_dir}/detection.tex", category="Tables",
                   labels={"table": "detection", "format": "LaTeX"}),
        csv=report(f"{PC.tables_dir}/detection.csv", category="Tables", labels={"table": "detection", "format": "CSV"}),
        pdf=report(f"{PC.figures_dir}/detection.pdf", category="Figures", subcategory="PDF",
                   labels={"figure": "detection", "format": "PDF"}),
        png=report(f"{PC.figures_dir}/detection.png", category="Figures", subcategory="PNG",
                   labels={"figure": "detection", "format": "PNG"}),
    params:
        settings=PC.detection_settings(),
        template_dir=_TABLES_TEMPLATES,
    log:
        "logs/tables/detection.log",
    benchmark:
        "benchmarks/tables/detection.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    threads: 1
    localrule: True
    conda:
        ENV
    script:
        "../scripts/render_detection.py"
