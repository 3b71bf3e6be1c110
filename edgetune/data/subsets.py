"""Seeded subsets of images, the same every run: which images calibrate INT8, which judge the
artifacts when there are too many, which target images adaptation draws from. Torch-free."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from edgetune.data.scan import Sample


def stratified_sample(samples: list[Sample], n: int, seed: int = 0) -> list[Sample]:
    """Up to `n` samples, drawn round-robin over classes (all of them when there are fewer)."""
    if n >= len(samples):
        return list(samples)
    rng = random.Random(seed)
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    for items in by_class.values():
        rng.shuffle(items)
    picked: list[Sample] = []
    queues = [by_class[k] for k in sorted(by_class)]
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop())
    return sorted(picked, key=lambda s: (s.label, str(s.path)))


def subset(paths: list[Path], n: int, seed: int = 0) -> list[Path]:
    """Up to `n` of `paths`, a seeded draw, returned sorted (the same images every run)."""
    if n >= len(paths):
        return list(paths)
    return sorted(random.Random(seed).sample(list(paths), n))


def adaptation_subset(samples: list, images: int, seed: int) -> list:
    """A fixed, seeded subset of the training samples: the same images every epoch."""
    rng = random.Random(seed)
    picked = list(samples)
    rng.shuffle(picked)
    return picked[:images]
