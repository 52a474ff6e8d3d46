"""Datasets.

- ``datasets``: ImageSet / DataSplits, DatasetUnavailable, on-device batches and the exact uint8 -> float table.
- ``splits``: load_splits, a run's train / validation / test splits through the loaders below.
- ``cifar``, ``tinyimagenet``, ``synthetic``: the loaders of CIFAR-10/100 (torchvision's files),
  TinyImageNet-200 (its folder layout, with a decoded cache) and the deterministic synthetic task.
- ``augment``: on-device random crop and flip.
- ``download``: SOURCES (URLs, md5s, layouts: the one table of the datasets), retrieval with md5
  verification (the download rule) and the helpers the loaders share with it.
- ``availability``: the cheap presence check run before the workflow starts.
"""
