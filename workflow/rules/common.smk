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


wildcard_constraints:
    setting=alternation(SETTINGS),
    seed=r"\d+",
    suite=alternation(SUITES),
    target=alternation(W.agg_targets),
    dataset=alternation(W.datasets),
    grid=alternation(W.grids),
