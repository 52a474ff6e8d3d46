# Shared by every rule file: the validated pipeline config (PC, validated by the Snakefile before this
# file is included), the workflow's paths and input functions (W: trades_instability.workflow.paths;
# no functions are defined in the rule files) and the job environment.
# Paths are relative to the working directory (--directory).
from trades_instability.workflow.paths import WorkflowPaths, alternation, export_job_env

W = WorkflowPaths(PC, workflow.basedir)
R = W.results  # results/ by default
ENV = "../../envs/trades.yaml"  # conda env of every job (--sdm conda)
SETTINGS = list(PC.settings)
SUITES = PC.suite_names
LANDSCAPE_SUITE = PC.landscape_suite
TABLES = W.tables
FIGURES = W.figures

# The shell commands read the library path and the data root as $TRADES_SRC, $TRADES_DATA_ROOT and
# $TRADES_DATA_ROOT_YAML, set here in Snakemake's own environment (inherited by local jobs; a SLURM
# job's snakemake parses this file again). Not params: params are a rerun trigger, and neither moving
# the clone nor moving the data is a new experiment. The data root is recorded in every run's
# config.yaml and run.json.
export_job_env(PC, workflow.basedir)

# The job environment of every shell command, written once: the library first on PYTHONPATH, and (JOB_ENV, for
# the jobs that compute) as many OpenMP / MKL threads as the job's `threads:`. The shell lines then call the
# library only through `python -m trades_instability VERB` (src/trades_instability/__main__.py), so that moving
# a module never changes a rule's shell text: Snakemake reruns a job whose shell text changed.
_LIBRARY_PATH = 'export PYTHONPATH="$TRADES_SRC"${{PYTHONPATH:+:$PYTHONPATH}}'
LIBRARY_ENV = _LIBRARY_PATH + "; "  # rule download: nothing may ever change its shell text (download.smk)
JOB_ENV = _LIBRARY_PATH + " OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "


wildcard_constraints:
    setting=alternation(SETTINGS),
    seed=r"\d+",
    suite=alternation(SUITES),
    target=alternation(W.agg_targets),
    dataset=alternation(W.datasets),
    grid=alternation(W.grids),
