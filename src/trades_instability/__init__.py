"""Reproduction library for "Adversarial Robustness Overestimation and Instability in TRADES".

Submodules are importable on their own: ``metrics`` (FOSC, SGCS, batch-level gradient
metrics), ``losses`` (the TRADES loss), ``attacks`` (TPGD, PGD), ``models`` (CIFAR ResNet-18),
``data``, ``training`` and ``evaluation``.
"""

__version__ = "0.1.0"
