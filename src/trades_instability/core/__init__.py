"""The maths, no file I/O: models, the TRADES loss, attacks (TPGD, PGD), AWP, FOSC / SGCS metrics,
the loss landscape and the memory-format choice."""
