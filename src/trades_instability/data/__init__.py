"""Datasets: loaders for CIFAR-10/100, TinyImageNet and the synthetic task (``datasets``), on-device
augmentation (``augment``) and retrieval with md5 verification (``download``)."""
