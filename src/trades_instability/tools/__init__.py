"""Tools beside the pipeline: the speed benchmark (``bench``, with the official-TRADES reference it times in
``reference_trades`` and the FLOP counting and peak GEMM rate in ``flops``) and the bf16 precision check."""
