"""The maths, no file I/O.

- ``models``: ARCHITECTURES (ResNet-18, PreActResNet-18, WRN-34-10) and their builder.
- ``losses``: the TRADES loss (eq. 1) and the PGD-AT and ALP controls.
- ``methods``: METHODS, each training method's attack and loss.
- ``attacks``: TPGD and PGD (with the step gradients SGCS needs).
- ``awp``: adversarial weight perturbation (TRADES-AWP, Table 7), in both conventions' forms.
- ``metrics``: FOSC (eq. 2), SGCS (eq. 3), GradAlign and the batch-level gradient norms.
- ``masking``: planted gradient masking, the positive control (its kinds and model wrapper).
- ``landscape``: the loss landscape of Figure 1.
- ``verdict``: the Unstable rule and its threshold, once.
- ``memory_format``: channels_last where the backend runs it correctly.
"""
