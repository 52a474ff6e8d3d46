"""Training: the loop with checkpointing, resume and Algorithm 1 (``loop``) and its command line (``cli``)."""
