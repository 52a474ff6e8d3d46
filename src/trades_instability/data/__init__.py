"""Datasets: loaders for CIFAR-10/100, TinyImageNet and the synthetic task (``datasets``), on-device
augmentation (``augment``), retrieval with md5 verification (``download``: ``SOURCES``, the one table of
the datasets) and the cheap presence check run before the workflow starts (``availability``)."""
