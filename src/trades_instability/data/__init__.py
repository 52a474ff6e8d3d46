"""Datasets.

- ``datasets``: ImageSet / DataSplits, load_splits (dispatch to the loaders below), the validation split,
  on-device batches and the exact uint8 -> float table.
- ``cifar``, ``tinyimagenet``, ``synthetic``: the loaders of CIFAR-10/100 (torchvision's files),
  TinyImageNet-200 (its folder layout, with a decoded cache) and the deterministic synthetic task.
- ``augment``: on-device random crop and flip.
- ``download``: SOURCES (URLs, md5s, layouts: the one table of the datasets), retrieval with md5
  verification (the download rule) and the helpers the loaders share with it.
- ``availability``: the cheap presence check run before the workflow starts.
"""
