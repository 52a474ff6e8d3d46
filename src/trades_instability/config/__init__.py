"""Configuration: the run config (``run``: one training run, conventions as presets) and the pipeline
config (``pipeline``: config.yaml, its semantic checks, expansion into runs; ``schema``: the JSON schema
and its error lines; ``suites``: the built-in evaluation suites; ``cli``: the workflow's helper commands)."""
