# Figures 1-7 of the paper (PDF + PNG). Inputs: summary.csv, selection.json and, for every seed of
# the settings a figure names in config `figures:`, the per-run files it reads (epochs.csv,
# batches.csv, landscape.npz). All seeds are inputs because the representative Regular / Unstable /
# self-healing seeds are only known after aggregation; the script picks them from selection.json.
import os as _figures_os

from trades_instability.figures import figure_inputs as _figure_inputs

_FIGURES_RESULTS = str(config.get("results_dir", "results")).rstrip("/")


def _figure_spec(wildcards):
    specs = config.get("figures") or {}
    if wildcards.figure not in specs:
        raise ValueError(f"config key 'figures.{wildcards.figure}' is missing")
    return specs[wildcards.figure]


def _figure_run_files(wildcards):
    """epochs.csv / batches.csv / landscape.npz of ALL seeds of the settings named by the figure."""
    return _figure_inputs(config, wildcards.figure, _FIGURES_RESULTS)


rule figure:
    """Render figures/{figure}.pdf and figures/{figure}.png."""
    input:
        summary=_figures_os.path.join(_FIGURES_RESULTS, "summary.csv"),
        selection=_figures_os.path.join(_FIGURES_RESULTS, "selection.json"),
        runs=_figure_run_files,
    output:
        pdf=report("figures/{figure}.pdf", category="Figures", subcategory="PDF", labels={"figure": "{figure}"}),
        png=report("figures/{figure}.png", category="Figures", subcategory="PNG", labels={"figure": "{figure}"}),
    params:
        spec=_figure_spec,
    log:
        "logs/figures/{figure}.log",
    benchmark:
        "benchmarks/figures/{figure}.tsv"
    wildcard_constraints:
        figure="figure[1-7]",
    resources:
        mem_mb=2000,
        runtime=15,
    threads: 1
    script:
        "../scripts/render_figure.py"
