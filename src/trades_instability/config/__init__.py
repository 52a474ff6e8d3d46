"""Configuration: the run config (``run``: one training run, conventions as presets) and the pipeline
config (``pipeline``: config.yaml, its schema and semantic checks, expansion into runs)."""
