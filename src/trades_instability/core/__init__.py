"""The maths, no file I/O: models, the TRADES loss, attacks (TPGD, PGD), AWP, FOSC / SGCS metrics, the loss
landscape, the Unstable rule (``verdict``) and the memory-format choice."""
