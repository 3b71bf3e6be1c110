"""Where the trainable module's batches come from: decoded images, or cached prefix features.

`ImageInputs` runs the whole model on augmented images, as every fine-tuning tutorial does.
`CachedInputs` runs only the trainable suffix, on the frozen prefix's output computed once
per image and view (edgetune.train.cache). Both draw batches in the same seeded, resumable
order (EpochSampler), so with `--augment none` they train on identical inputs: a test
checks that their losses agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgetune.train.cache import FeatureCache, Features, Request, feature_shape
from edgetune.train.data import EpochSampler, ImageDataset, eval_transform, make_loader, train_transform
from edgetune.train.distributed import World


@dataclass
class Sources:
    """The samples one process trains (all: each path takes its share), evaluates and
    re-estimates BatchNorm on."""
    train: list
    val: list
    bn: list  # empty: no slow BatchNorm to re-estimate


class ImageInputs:
    cached = False

    def __init__(self, model: nn.Module, src: Sources, pre, cfg, world: World, workers: int,
                 class_weights: torch.Tensor):
        self.module = model
        self.seed, self.batch_size, self.balance = cfg.seed, cfg.batch_size, cfg.balance
        ds = ImageDataset(src.train, train_transform(pre, cfg.augment), cfg.skip_bad_images)
        self.sampler = EpochSampler(len(src.train), cfg.seed, world.rank, world.size)
        self.loader_rng = torch.Generator()  # seeds the loader workers, re-seeded per epoch
        if cfg.balance == "sampler":
            # Each process draws from its own share with its own seed: ranks must not repeat
            # each other's batches.
            ds.samples = world.shard(src.train, pad=True)
        self.loader = make_loader(
            ds, cfg.batch_size, workers,
            sampler=None if cfg.balance == "sampler" else self.sampler,
            balance=class_weights if cfg.balance == "sampler" else None, seed=cfg.seed + 1000 * world.rank,
            # A last batch of one breaks BatchNorm in training mode.
            drop_last=self.sampler.num_samples > cfg.batch_size, generator=self.loader_rng)
        self.val_loader = make_loader(ImageDataset(src.val, eval_transform(pre), cfg.skip_bad_images),
                                      cfg.batch_size, workers)
        self.bn_loader = make_loader(ImageDataset(src.bn, eval_transform(pre), cfg.skip_bad_images),
                                     cfg.batch_size, workers) if src.bn else None

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def train_batches(self, epoch: int, step: int):
        self.sampler.set_position(epoch, step * self.batch_size)  # skip the batches done
        self.loader_rng.manual_seed(self.seed * 100_003 + epoch)
        return self.loader

    def val_batches(self):
        return self.val_loader

    def bn_batches(self):
        return self.bn_loader


class CachedInputs:
    cached = True

    def __init__(self, suffix: nn.Module, train: Features, val: Features, bn: Features | None,
                 cfg, class_weights: torch.Tensor):
        self.module = suffix
        self.train, self.val, self.bn = train, val, bn
        self.seed, self.batch_size, self.balance = cfg.seed, cfg.batch_size, cfg.balance
        self.class_weights = class_weights
        self.sampler = EpochSampler(len(train), cfg.seed)
        self.drop_last = len(train) > cfg.batch_size

    @classmethod
    def build(cls, split, cache: FeatureCache, src: Sources, pre, cfg, world: World, views: int,
              class_weights: torch.Tensor, device):
        """Fill or reuse the caches; None when they fit neither memory nor disk."""
        shape = feature_shape(split.prefix, pre.size, device)
        tag = f"-r{world.rank}of{world.size}" if world.distributed else ""
        # Under torchrun each process caches and trains a fixed share (equal lengths: DDP steps
        # in lockstep), reshuffled every epoch.
        train = cache.get(Request(f"train{tag}", world.shard(src.train, pad=True), train_transform(pre, cfg.augment),
                                  views, cfg.augment), shape)
        if train is None:
            return None
        val = cache.get(Request(f"val{tag}", src.val, eval_transform(pre), 1, "none"), shape)
        bn = cache.get(Request(f"bn{tag}", src.bn, eval_transform(pre), 1, "none"), shape) if src.bn else None
        if val is None or (src.bn and bn is None):
            return None
        return cls(split.suffix, train, val, bn, cfg, class_weights)

    def steps_per_epoch(self) -> int:
        n = len(self.train)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def train_batches(self, epoch: int, step: int):
        n = len(self.train)
        if self.balance == "sampler":
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            weights = self.class_weights[torch.from_numpy(self.train.labels)]
            order = torch.multinomial(weights, n, replacement=True, generator=g).numpy()
        else:
            self.sampler.set_position(epoch, 0)
            order = np.fromiter(iter(self.sampler), dtype=np.int64, count=n)
        # Each epoch trains on one of the cached views of every image, drawn with a seed.
        views = np.random.default_rng([self.seed, epoch]).integers(self.train.views, size=n)
        stop = self.steps_per_epoch() * self.batch_size
        for start in range(step * self.batch_size, min(stop, n), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.train.gather(idx, views[idx]), torch.from_numpy(self.train.labels[idx])

    def val_batches(self):
        return sequential(self.val, self.batch_size)

    def bn_batches(self):
        return sequential(self.bn, self.batch_size) if self.bn is not None else None


def sequential(features: Features, batch_size: int):
    """(inputs, labels) of every row of `features`' first view, in order."""
    for start in range(0, len(features), batch_size):
        idx = np.arange(start, min(start + batch_size, len(features)))
        yield features.gather(idx), torch.from_numpy(features.labels[idx])
