"""Datasets: the splits and the batch iterator (``datasets``) over the loaders for CIFAR-10/100 (``cifar``),
TinyImageNet (``tinyimagenet``) and the synthetic task (``synthetic``), on-device augmentation (``augment``),
retrieval with md5 verification (``download``: ``SOURCES``, the one table of the datasets) and the cheap
presence check run before the workflow starts (``availability``)."""
