# Figures 1-7 of the paper (PDF + PNG). Inputs: summary.csv, selection.json and, for EVERY seed of the
# settings a figure names in config `figures:`, the per-run files it reads (epochs.csv, batches.csv,
# landscape.npz). All seeds are inputs because the representative Regular / Unstable / self-healing
# seeds are only known after aggregation; the script picks them from selection.json.
#
# Inside the full Snakefile (common.smk included first) the per-target aggregation
# results/aggregate/{figure}/summary.csv and the run lists of pipeline_config are used (landscapes only
# for settings with `landscape: true`); included on its own the seeds come from config `settings:`.
import os as _figures_os
import sys as _figures_sys
from pathlib import Path as _FiguresPath

_figures_sys.path.insert(0, str(_FiguresPath(workflow.basedir) / "src"))
from trades_instability.figures import figure_files as _figure_files  # noqa: E402
from trades_instability.figures import figure_inputs as _figure_inputs  # noqa: E402
from trades_instability.figures import figure_settings as _figure_settings  # noqa: E402

_FIGURES_RESULTS = str(config.get("results_dir", "results")).rstrip("/")
_FIGURES_DIR = str(config.get("figures_dir", "figures")).rstrip("/")


def _figure_spec(wildcards):
    specs = config.get("figures") or {}
    if wildcards.figure not in specs:
        raise ValueError(f"config key 'figures.{wildcards.figure}' is missing")
    return specs[wildcards.figure]


def _figure_run_files(wildcards):
    """epochs.csv / batches.csv / landscape.npz of ALL seeds of the settings named by the figure."""
    name = wildcards.figure
    if "run_files" in globals() and "landscape_files" in globals():
        settings = _figure_settings(name, _figure_spec(wildcards))
        files = []
        for f in _figure_files(name):
            files += landscape_files(settings) if f == "landscape.npz" else run_files(settings, f)
        return files
    return _figure_inputs(config, name, _FIGURES_RESULTS)


def _figure_inputs_all(wildcards):
    if "summary_for" in globals() and "selection_for" in globals():
        agg = {"summary": summary_for(wildcards.figure), "selection": selection_for(wildcards.figure)}
    else:
        agg = {"summary": _figures_os.path.join(_FIGURES_RESULTS, "summary.csv"),
               "selection": _figures_os.path.join(_FIGURES_RESULTS, "selection.json")}
    return {**agg, "runs": _figure_run_files(wildcards)}


rule figure:
    """Render {figures_dir}/{figure}.pdf and {figures_dir}/{figure}.png."""
    input:
        unpack(_figure_inputs_all),
    output:
        pdf=report(_FIGURES_DIR + "/{figure}.pdf", category="Figures", subcategory="PDF",
                   labels={"figure": "{figure}", "format": "PDF"}),
        png=report(_FIGURES_DIR + "/{figure}.png", category="Figures", subcategory="PNG",
                   labels={"figure": "{figure}", "format": "PNG"}),
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
    localrule: True
    conda:
        "../../envs/trades.yaml"
    script:
        "../scripts/render_figure.py"
