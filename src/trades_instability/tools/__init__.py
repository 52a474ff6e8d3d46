"""Tools beside the pipeline.

- ``bench`` (trades-bench): the speed benchmark; ``bench_training`` and ``bench_eval`` its training and
  evaluation tables; ``reference_trades``: the official TRADES loop it is compared with; ``flops``: FLOP
  counting and the peak GEMM rate.
- ``precision_check``: bf16 against fp32 on the same checkpoint.
- ``gpu_check`` (gpu-check): one command that proves a GPU node; ``gpu_environment`` (driver, lock, CUDA),
  ``gpu_check_runner`` (its steps' results), ``gpu_check_report`` (report.json, report.md),
  ``device_checks`` (the GPU checks, shared with tests/test_gpu.py) and ``gpu_share`` (its workers for
  several jobs on one GPU).
- ``text_table``: the tools' printed tables.
"""
