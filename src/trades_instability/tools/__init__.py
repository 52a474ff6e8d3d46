"""Tools beside the pipeline: the speed benchmark (``bench``) and the bf16 precision check."""
