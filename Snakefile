# Reproduction pipeline of "Adversarial Robustness Overestimation and Instability in TRADES"
# (arXiv 2410.07675).
#
#   snakemake --cores all                     # everything: rule `paper` (7 tables, 7 figures, comparison)
#   snakemake --cores all tables/table3.tex   # one table with exactly the runs it needs
#   snakemake -n paper                        # dry run: every job of the paper (no data needed)
#   snakemake --workflow-profile workflow/profiles/slurm paper   # on a SLURM cluster
#   snakemake --report report.html            # HTML report with every table and figure
#
# Config: config.yaml next to this file, or --configfile FILE (which then REPLACES config.yaml instead
# of being merged into it, so a small test config never inherits the paper's settings);
# --config key=value overrides single keys (e.g. results_dir=/scratch/results).
#
# GPUs on one machine: every training / evaluation / landscape job claims the resource gpu=1 (one slot).
# Local runs have N GPUs (--resources gpu=N, else config local_gpus) with jobs_per_gpu slots each (config;
# defaults: workflow/schemas/config.schema.yaml): the global limit becomes gpu=N x jobs_per_gpu, and each job takes a slot of
# its own GPU (trades_instability.workflow.gpu_slots: a flock lease, CUDA_VISIBLE_DEVICES set per job). On a
# cluster (--jobs/--executor, e.g. the SLURM profile) no limit is set: the scheduler places the jobs
# and sets CUDA_VISIBLE_DEVICES.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.resources import Resource
from snakemake.utils import min_version
from snakemake_interface_executor_plugins.settings import ExecMode

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the library, also without `pip install -e .`
from trades_instability.workflow import gpu_slots  # noqa: E402
from trades_instability.config import pipeline as pipeline_config
from trades_instability.config import pipeline_loading
from trades_instability.workflow import slurm_site
from trades_instability.workflow import failed_jobs

# ---------------------------------------------------------------------------- config + validation
if not workflow.config_settings.configfiles:
    workflow.configfile(os.path.join(workflow.basedir, "config.yaml"))
try:
    PC = pipeline_loading.validate(
        dict(config),
        source=", ".join(map(str, workflow.config_settings.configfiles))
        or os.path.join(workflow.basedir, "config.yaml"),
    )
except pipeline_config.PipelineConfigError as e:
    raise WorkflowError(str(e)) from None
for _key, _value in pipeline_loading.DEFAULTS_TOP.items():
    config.setdefault(_key, _value)


# ------------------------------------------------ jobs_per_gpu jobs per GPU, each on its own GPU
# workflow.resource_settings.nodes is set by --jobs for cluster/cloud executors (for the local
# executor snakemake turns --jobs into --cores); remote job steps run in ExecMode.REMOTE.
os.environ.pop(gpu_slots.ENV_GPU_SLOTS, None)  # never inherited: set below for local runs only
if workflow.resource_settings.nodes is None and workflow.exec_mode == ExecMode.DEFAULT:
    # --resources gpu=N wins over local_gpus (Snakemake 9 stores it as a Resource)
    _given = workflow.global_resources.get("gpu")
    _given = _given.value if isinstance(_given, Resource) else _given  # None: unset
    _n_gpus = int(PC.raw["local_gpus"] if _given is None else _given)
    _per_gpu = int(PC.raw["jobs_per_gpu"])
    workflow.global_resources["gpu"] = _n_gpus * _per_gpu  # slots; each GPU job claims gpu=1
    if _n_gpus > 0:
        try:
            _slots = gpu_slots.local_settings(
                os.path.abspath(os.path.join(".snakemake", "gpu_slots")),
                _n_gpus,
                _per_gpu,
                os.environ.get("CUDA_VISIBLE_DEVICES"),
            )
        except gpu_slots.GpuSlotsError as e:
            raise WorkflowError(str(e)) from None
        os.environ[gpu_slots.ENV_GPU_SLOTS] = json.dumps(_slots)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/conventions.smk"
include: "workflow/rules/review.smk"


localrules:
    all,
    paper,


# `all` is the default target as the first rule of this file (rules of included files never are). No
# `default_target:` directive: snakefmt moves it above the docstring and then cannot parse its own output.
rule all:
    """Default target: the whole paper."""
    input:
        W.paper_targets(),


rule paper:
    """Every table (1-7), figure (1-7), the paper-vs-reproduction comparison and the FOSC detector."""
    input:
        W.paper_targets(),


# ------------------------------------------------------- datasets: checked before any job starts
onstart:
    # Real runs only (not -n): the settings whose train / evaluate / landscape jobs are scheduled
    # must find their dataset on disk or have a download job scheduled (config download: true),
    # otherwise stop now with where to put it.
    _needed, _fetching = [], set()
    for _job in workflow.dag.needrun_jobs():
        _w = getattr(_job, "wildcards_dict", {})
        _s = _w.get("setting")
        if _job.rule.name in ("train", "evaluate", "landscape") and _s and _s not in _needed:
            _needed.append(_s)
        if _job.rule.name == "download" and PC.download:
            _fetching.add(_w["dataset"])
    try:
        pipeline_loading.check_data_available(PC, _needed, fetching=_fetching)
        # SLURM executor only: job status without accounting, account noise, SLURM_CONF (workflow/slurm_site.py)
        slurm_site.on_start(workflow, logger, Path(workflow.basedir) / "workflow/profiles/slurm/bin")
    except (pipeline_config.PipelineConfigError, slurm_site.SlurmSiteError) as e:
        raise WorkflowError(str(e)) from None


# ------------------------------------------------------- a failed job says why on the console
onerror:
    # every executor and profile (local, SLURM): the last error line of each failed job's log
    failed_jobs.report(workflow, logger, log)
