"""Decisions the trainer makes before an unfreezing stage starts: how deep to train
(`--unfreeze auto`), whether caching the frozen prefix pays, how many augmented views to
cache, and the inputs that follow from those choices. Each choice is printed with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune import files
from edgetune.config import TrainConfig
from edgetune.train.cache import CacheSettings, FeatureCache, Request, feature_shape, memory_budget
from edgetune.train.data import eval_transform
from edgetune.train.distributed import World
from edgetune.train.freeze import FreezePlan
from edgetune.train.inputs import CachedInputs, ImageInputs, Sources
from edgetune.train.schedule import AutoChoice, choose_unfreeze
from edgetune.train.segments import Split, split

MAX_VIEWS = 4
EPOCHS_PER_VIEW = 6  # views are drawn once; a view pays when several epochs reuse it


def cached_views(cfg: TrainConfig, stage_epochs: int) -> tuple[int, str]:
    """Augmented views to cache per image, and why."""
    if cfg.augment == "none":
        return 1, "--augment none: one view"
    if cfg.cache_views is not None:
        return cfg.cache_views, f"--cache-views {cfg.cache_views}"
    views = max(1, min(MAX_VIEWS, stage_epochs // EPOCHS_PER_VIEW))
    return views, (f"{views} for {stage_epochs} epochs (one per {EPOCHS_PER_VIEW} epochs, at most "
                   f"{MAX_VIEWS}; filling a view costs about one uncached epoch; set --cache-views)")


@dataclass(frozen=True)
class RunSetup:
    """What every unfreezing stage is prepared from; fixed for the whole run."""
    cfg: TrainConfig
    model: nn.Module
    out: Path
    pre: object  # Preprocess
    world: World
    workers: int  # DataLoader processes
    device: torch.device
    log: Callable[..., None]
    src: Sources | None = None  # known once the model's BatchNorm layers are
    class_weights: torch.Tensor | None = None


@dataclass
class PreparedStage:
    """One unfreezing stage, ready to train."""
    index: int
    unfreeze: str
    plan: FreezePlan
    inputs: object  # ImageInputs | CachedInputs
    why: str
    step_module: nn.Module | None = None  # inputs.module, DDP-wrapped and/or compiled


def cache_reason(cfg: TrainConfig, prefix_stages: int) -> str | None:
    """Why the cache is off, or None when it pays."""
    if cfg.cache == "off":
        return "--cache off"
    if prefix_stages == 0:
        return "nothing is frozen below the trained blocks: there is no prefix to cache"
    return None


def make_cache(setup: RunSetup, s: Split) -> FeatureCache:
    """The feature cache of split `s`'s frozen prefix."""
    cfg = setup.cfg
    folder = Path(cfg.cache_dir) if cfg.cache_dir else setup.out / files.CACHE
    # Trials of a search train with their own seeds but draw the cached views with one seed,
    # so they share the cache.
    seed = cfg.seed if cfg.cache_seed is None else cfg.cache_seed
    parts = {"arch": cfg.model, "weights": cfg.weights, "split": s.where, "split_index": s.index,
             "preprocess": setup.pre.to_dict(), "seed": seed, "dtype": cfg.cache_dtype}
    settings = CacheSettings(folder, memory_budget(cfg.cache_memory), cfg.cache_dtype, cfg.batch_size,
                             setup.workers, setup.device, seed, cfg.skip_bad_images)
    return FeatureCache(s.prefix, parts, settings, setup.log)


def build_stage(setup: RunSetup, index: int, unfreeze: str, plan: FreezePlan, epochs: int) -> PreparedStage:
    """Unfreezing stage `index` (training `unfreeze` for `epochs` epochs), its inputs ready:
    cached prefix features where the cache pays and fits, decoded images otherwise."""
    cfg, model = setup.cfg, setup.model
    plan.apply(model)
    s = split(model, cfg.model)
    off = cache_reason(cfg, s.index)
    if off is None:
        views, views_why = cached_views(cfg, epochs)
        inputs = CachedInputs.build(s, make_cache(setup, s), setup.src, setup.pre, cfg, setup.world, views,
                                    setup.class_weights, setup.device)
        if inputs is not None:
            why = (f"cache on: the frozen prefix runs once per image and view instead of every "
                   f"epoch; training runs from {s.where}; views: {views_why}")
            return PreparedStage(index, unfreeze, plan, inputs, why)
        off = "the features fit neither the memory budget nor the disk"
    inputs = ImageInputs(model, setup.src, setup.pre, cfg, setup.world, setup.workers, setup.class_weights)
    return PreparedStage(index, unfreeze, plan, inputs, f"cache off: {off}")


def resolve_unfreeze(setup: RunSetup, splits) -> AutoChoice:
    """`--unfreeze auto`: the rule of thumb, from images per class and a head-only probe."""
    cfg = setup.cfg
    groups = len(FreezePlan.build(cfg.model, setup.model, "head").groups)
    per_class = len(splits.train) / max(len(splits.classes), 1)
    probe = None if cfg.from_scratch else _probe(setup, splits)
    return choose_unfreeze(per_class, probe, cfg.from_scratch, groups)


def _probe(setup: RunSetup, splits) -> float:
    """Val top-1 of a logistic-regression head on the frozen pooled features (cached)."""
    cfg, pre = setup.cfg, setup.pre
    FreezePlan.build(cfg.model, setup.model, "head").apply(setup.model)
    s = split(setup.model, cfg.model)
    cache = make_cache(setup, s)
    shape = feature_shape(s.prefix, pre.size, setup.device)
    train = cache.get(Request("probe-train", splits.train, eval_transform(pre), 1, "none"), shape)
    val = cache.get(Request("probe-val", splits.val, eval_transform(pre), 1, "none"), shape)
    if train is None or val is None:
        return 0.0
    x = torch.from_numpy(np.asarray(train.array[0], np.float32)).flatten(1)
    xv = torch.from_numpy(np.asarray(val.array[0], np.float32)).flatten(1)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xv = (x - mean) / std, (xv - mean) / std
    y = torch.from_numpy(train.labels)
    head = nn.Linear(x.shape[1], len(splits.classes))
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        top1 = (head(xv).argmax(1).numpy() == val.labels).mean()
    return float(top1)
