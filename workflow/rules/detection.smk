# FOSC as a detector of Unstable runs (beyond the paper; trades_instability.report.detection):
#   {tables_dir}/detection.tex (+ detection.csv, one row per run) and {figures_dir}/detection.pdf (+ .png)
# from the classified runs of the settings in config `detection.settings` (default: all). Reads the
# per-target aggregation results/aggregate/detection/ and epochs.csv of every run of those settings.


rule detection:
    """How well peak validation FOSC separates Unstable from Regular runs; the calibrated threshold."""
    input:
        **W.report_inputs("detection"),
        epochs=W.run_files(PC.detection_settings(), "epochs.csv"),
    output:
        tex=report(W.table_file("detection.tex"), category="Tables", labels={"table": "detection", "format": "LaTeX"}),
        csv=report(W.table_file("detection.csv"), category="Tables", labels={"table": "detection", "format": "CSV"}),
        pdf=report(
            W.figure_file("detection.pdf"),
            category="Figures",
            subcategory="PDF",
            labels={"figure": "detection", "format": "PDF"},
        ),
        png=report(
            W.figure_file("detection.png"),
            category="Figures",
            subcategory="PNG",
            labels={"figure": "detection", "format": "PNG"},
        ),
    log:
        "logs/tables/detection.log",
    benchmark:
        "benchmarks/tables/detection.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        settings=PC.detection_settings(),
    script:
        "../scripts/render_detection.py"
