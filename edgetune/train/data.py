"""Datasets and loaders for training: the train preset augments, the eval preset is
exactly `Preprocess.apply`, the function deployment code runs."""

from __future__ import annotations

import itertools
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler
from torchvision.transforms import v2

from edgetune.data.scan import Sample
from edgetune.data.target_domain import UNLABELLED
from edgetune.errors import DataError, DataWarning, InputError
from edgetune.host import loader_processes
from edgetune.preprocess import Preprocess, load_image


class ImageDataset(Dataset):
    """Samples decoded on demand. `skip_bad`: an image that no longer reads (changed after the
    scan) gives its place to the next readable one, so batch shapes, the sampler's order and
    an exact resume stay as they were; each skipped file is named once per process."""

    def __init__(self, samples: list[Sample], transform, skip_bad: bool = False):
        self.samples = samples
        self.transform = transform
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        n = len(self.samples)
        for j in range(n):
            s = self.samples[(i + j) % n]
            try:
                image = load_image(s.path)
            except InputError as exc:
                if not self.skip_bad:
                    raise DataError(f"{exc}; --verify-images finds every such file before training, "
                                    "--skip-bad-images leaves them out") from None
                warnings.warn(f"--skip-bad-images: left out {s.path}, unreadable while loading "
                              "(changed since the scan?); the next image takes its place", DataWarning, stacklevel=2)
                continue
            return self.transform(image), s.label
        raise DataError(f"none of the {n} images could be read; check that the data folder is still there")


def train_transform(pre: Preprocess, augment: str):
    """Augmentation that ends in the same normalisation as `pre`."""
    size = list(pre.size)
    interp = v2.InterpolationMode(pre.interpolation)
    if augment == "none":
        return eval_transform(pre)
    if augment == "light":
        # Mild scale jitter, no flips: safe for digits, text and other handed images.
        ops = [v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1), interpolation=interp)]
    else:
        ops = [v2.RandomResizedCrop(size, interpolation=interp), v2.RandomHorizontalFlip()]
    return v2.Compose([
        v2.PILToTensor(), *ops, v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(pre.mean), list(pre.std)),
    ])


def eval_transform(pre: Preprocess):
    return lambda image: torch.from_numpy(pre.apply(image))


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler (a seeded permutation per epoch, this process's share of it)
    that can also start part-way, so a run resumed at any epoch and step sees the same order
    it would have seen uninterrupted. One process: the whole permutation."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


def class_weights(samples: list[Sample], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1: each class contributes equally to the loss."""
    counts = Counter(s.label for s in samples)
    w = torch.tensor([1.0 / counts.get(c, 1) for c in range(num_classes)])
    return w * num_classes / w.sum()


def make_loader(ds: ImageDataset, batch_size: int, workers: int, sampler=None, balance=None, seed=0,
                drop_last: bool = False, generator=None):
    if balance is not None:
        weights = balance[[s.label for s in ds.samples]]
        sampler = WeightedRandomSampler(weights, len(ds), generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), drop_last=drop_last,
        # Its own generator: starting an epoch must not draw from the global RNG, whose
        # state a resumed run restores mid-epoch.
        generator=generator if generator is not None else torch.Generator().manual_seed(seed),
    )


ADAPT_BATCH = 64  # target images per batch in adaptation: statistics, not steps


def image_loader(paths_or_samples, pre: Preprocess, batch: int = ADAPT_BATCH, shuffle_seed: int | None = None,
                 skip_bad: bool = False):
    """Target images through the eval transform (the deployment preprocessing)."""
    samples = [s if isinstance(s, Sample) else Sample(Path(s), UNLABELLED) for s in paths_or_samples]
    ds = ImageDataset(samples, eval_transform(pre), skip_bad)
    sampler = None
    if shuffle_seed is not None:
        sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(shuffle_seed))
    return make_loader(ds, batch, loader_processes(), sampler=sampler, seed=shuffle_seed or 0)
