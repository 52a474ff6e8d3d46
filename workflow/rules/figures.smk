# Figures 1-7 of the paper (PDF + PNG). Inputs: the per-target aggregation
# results/aggregate/{figure}/summary.csv + selection.json and, for EVERY seed of the settings a figure
# names in config `figures:`, the per-run files it reads (epochs.csv, batches.csv, landscape.npz of the
# settings with `landscape: true`). All seeds are inputs because the representative Regular / Unstable /
# self-healing seeds are only known after aggregation; the script picks them from selection.json. The
# figures' builder module (report/figures.py) is an input too: editing it redraws the figures (W.code_of).


rule figure:
    """Render {figures_dir}/{figure}.pdf and {figures_dir}/{figure}.png."""
    input:
        unpack(W.figure_inputs),
    output:
        pdf=report(
            W.figure_file("{figure}.pdf"),
            category="Figures",
            subcategory="PDF",
            labels={"figure": "{figure}", "format": "PDF"},
        ),
        png=report(
            W.figure_file("{figure}.png"),
            category="Figures",
            subcategory="PNG",
            labels={"figure": "{figure}", "format": "PNG"},
        ),
    log:
        "logs/figures/{figure}.log",
    benchmark:
        "benchmarks/figures/{figure}.tsv"
    wildcard_constraints:
        figure=W.artifact_names("figure"),
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        spec=W.figure_spec,
    script:
        "../scripts/render_figure.py"
