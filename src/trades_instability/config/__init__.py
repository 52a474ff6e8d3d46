"""Configuration.

- ``run``: RunConfig, every key of one training run with its default; CONVENTIONS, the preset table.
- ``pipeline``: config.yaml -> settings, seeds and runs (PipelineConfig, load).
- ``pipeline_loading``: the semantic checks of a whole pipeline config, and the dataset check.
- ``schema``: the JSON schema's errors as one line; the top-level defaults.
- ``suites``: the built-in evaluation suites and every check of a suite's values, once.
- ``cli``: the workflow's helper commands (validate, list-runs, prepare-state, publish).
"""
