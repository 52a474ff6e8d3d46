"""The train / validation / test splits of a run: :func:`load_splits` loads ``cfg.dataset`` through its loader
(:mod:`~trades_instability.data.cifar`, :mod:`~trades_instability.data.tinyimagenet`,
:mod:`~trades_instability.data.synthetic`) and applies the config's validation policy (:func:`make_val_split`)."""

from __future__ import annotations

from pathlib import Path

import torch

from trades_instability.config.run import RunConfig
from trades_instability.data.cifar import load_cifar
from trades_instability.data.datasets import DataSplits, ImageSet
from trades_instability.data.synthetic import make_synthetic
from trades_instability.data.tinyimagenet import load_tinyimagenet

# Fixed seeds of the split permutations. They are constants on purpose: the holdout set and the
# validation subset must be the same for every run seed, or runs would not be comparable.
HOLDOUT_PERM_SEED = 20241010
VAL_SUBSET_PERM_SEED = 7675


def load_splits(cfg: RunConfig) -> DataSplits:
    """Load ``cfg.dataset`` and build train / val / test as the config asks.

    ``val_split: test`` validates on the test set and trains on the whole train set (as the paper:
    50,000 CIFAR images); ``holdout`` removes the last ``holdout_size`` examples of a fixed
    permutation of train and validates on them. ``val_size`` then takes a fixed subset of the
    validation split. The test split is always the full test set."""
    name = cfg.dataset
    if name in ("cifar10", "cifar100"):
        train, test, num_classes = load_cifar(name, Path(cfg.data_root), cfg.download)
    elif name == "tinyimagenet":
        train, test, num_classes = load_tinyimagenet(Path(cfg.data_root), cfg.download)
    elif name == "synthetic":
        s = cfg.synthetic
        train, test = make_synthetic(
            num_classes=s.num_classes, train_size=s.train_size, test_size=s.test_size,
            image_size=s.image_size, seed=s.seed,
        )
        num_classes = s.num_classes
    else:
        raise ValueError(f"config key 'dataset': unknown dataset {name!r}")

    train, val = make_val_split(train, test, val_split=cfg.val_split, holdout_size=cfg.holdout_size,
                                val_size=cfg.val_size, dataset=name)
    return DataSplits(train=train, val=val, test=test, num_classes=num_classes,
                      image_size=int(train.images.shape[-1]), name=name)


def make_val_split(
    train: ImageSet, test: ImageSet, *, val_split: str, holdout_size: int, val_size: int | None,
    dataset: str = "dataset",
) -> tuple[ImageSet, ImageSet]:
    """Return ``(train, val)`` for a validation policy (see :func:`load_splits`)."""
    if val_split == "test":
        val = test
    elif val_split == "holdout":
        n = len(train)
        if not 0 < holdout_size < n:
            raise ValueError(
                f"config key 'holdout_size' must be in 1..{n - 1} (the {dataset} train set has {n} examples), "
                f"got {holdout_size}"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_PERM_SEED))
        keep, _ = torch.sort(perm[: n - holdout_size])  # remaining train keeps its original order
        val = train.subset(perm[n - holdout_size:])
        train = train.subset(keep)
    else:
        raise ValueError(f"config key 'val_split' must be 'test' or 'holdout', got {val_split!r}")
    if val_size is not None:
        n = len(val)
        if not 0 < val_size <= n:
            raise ValueError(
                f"config key 'val_size' must be in 1..{n} (the {val_split!r} validation split of {dataset} "
                f"has {n} examples) or null, got {val_size}"
            )
        if val_size < n:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SUBSET_PERM_SEED))
            val = val.subset(torch.sort(perm[:val_size]).values)
    return train, val
