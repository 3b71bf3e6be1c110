"""Decisions the trainer makes before training or an unfreezing stage starts: the batch for a
small training set, how deep to train (`--unfreeze auto`), whether caching the frozen prefix
pays, how many augmented views to cache, and the inputs that follow from those choices. Each
choice is printed with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune import files
from edgetune.config import TrainConfig
from edgetune.data.subsets import stratified_sample
from edgetune.defaults import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LR
from edgetune.train.cache import CacheSettings, FeatureCache, Request, feature_shape, memory_budget
from edgetune.train.data import eval_transform
from edgetune.train.distributed import World
from edgetune.train.freeze import FreezePlan
from edgetune.train.inputs import CachedInputs, ImageInputs, Sources
from edgetune.train.schedule import TINY_IMAGES, AutoChoice, choose_unfreeze
from edgetune.train.segments import Split, split

# Cached augmented views per image at most when blocks train: memory and disk grow with each.
MAX_VIEWS = 8
# A head alone (a linear layer on pooled features) needs few views: one per HEAD_EPOCHS_PER_VIEW
# epochs, at most HEAD_MAX_VIEWS. Measured on the shipped photos, pretrained EfficientNet-Lite0,
# head only, 10 epochs, 3 seeds: 92.4% top-1 from one view, 93.0% from a fresh view every epoch.
HEAD_EPOCHS_PER_VIEW, HEAD_MAX_VIEWS = 6, 4
# Up to FRESH_VIEW_IMAGES training images a class, the head gets a fresh view every epoch: there
# the augmentation is what stands between the head and memorising the set, and a fill costs
# seconds. The same photos and model, `--cache-views 10` against one view (val points; one image
# is 1.75): 5 a class +1.8, +7.0, +1.8 and 10 a class +1.8 each (three seeds, head lr 1e-3); 20 a
# class +1.17 on average over twelve seeds at the head's lr 3e-3 (92.11 -> 93.28 %; three seeds
# at lr 1e-3 had given 0, -3.5, -1.8); all 137 photographs (27 a class), six seeds at lr 3e-3:
# -1.2 (97.37 -> 96.20 %) in 4x the wall time (BENCHMARKS.md, Transfer from ImageNet on few
# photographs).
FRESH_VIEW_IMAGES = 20


@dataclass(frozen=True)
class CachePlan:
    """Whether the frozen prefix is cached in a stage, with how many augmented views, and why."""
    views: int  # 0: train uncached
    why: str


def plan_cache(cfg: TrainConfig, prefix_segments: int, head_only: bool, stage_epochs: int,
               per_class: float | None = None) -> CachePlan:
    """`--cache auto` weighs accuracy as well as time. Cached, each image is seen through the
    views drawn at fill time; uncached, through a fresh augmentation every epoch. When blocks
    train, serving one view to many epochs is less augmentation and costs accuracy (one view
    for 8 epochs: 82.5% against 92.5% uncached, resnet18 from scratch on textures), so the cache
    draws one view per epoch, up to MAX_VIEWS. Filling a view runs the prefix once per image, as
    an uncached epoch does: where every epoch gets its own view the cache saves nothing in one
    run and stays off, unless other runs reuse its views (--cache-seed, a search's trials). A
    head alone loses nothing measurable from reused views, and gains most from the cache,
    except on few images (`per_class`, training images a class, up to FRESH_VIEW_IMAGES)."""
    if cfg.cache == "off":
        return CachePlan(0, "--cache off")
    if prefix_segments == 0:
        return CachePlan(0, "nothing is frozen below the trained blocks: there is no prefix to cache")
    if cfg.augment == "none":
        return CachePlan(1, "--augment none: one view serves every epoch")
    if cfg.cache_views is not None:
        return CachePlan(cfg.cache_views, f"--cache-views {cfg.cache_views}")
    if head_only and per_class is not None and per_class <= FRESH_VIEW_IMAGES:
        return CachePlan(stage_epochs, f"{stage_epochs} for {stage_epochs} epochs (head only on {per_class:.0f} "
                                       f"training images a class, at most {FRESH_VIEW_IMAGES}: a fresh view every "
                                       "epoch, for seconds on so few images; set --cache-views)")
    if head_only:
        views = max(1, min(HEAD_MAX_VIEWS, stage_epochs // HEAD_EPOCHS_PER_VIEW))
        return CachePlan(views, f"{views} for {stage_epochs} epochs (head only: one per "
                                f"{HEAD_EPOCHS_PER_VIEW} epochs, at most {HEAD_MAX_VIEWS}; a linear head "
                                "loses nothing measurable from reused views; set --cache-views)")
    views = min(stage_epochs, MAX_VIEWS)
    if views == stage_epochs and cfg.cache_seed is None:
        return CachePlan(0, f"--augment {cfg.augment} with trained blocks needs a fresh view every epoch, "
                            f"and caching {views} view(s) for {stage_epochs} epoch(s) runs the frozen prefix "
                            "as often as training uncached: nothing to save (--cache-views N trades "
                            "augmentation for speed)")
    reuse = "shared with other runs (--cache-seed)" if views == stage_epochs else (
        f"each serves {stage_epochs / views:.1f} epochs on average")
    return CachePlan(views, f"{views} for {stage_epochs} epochs (one per epoch with trained blocks, at "
                            f"most {MAX_VIEWS}), {reuse}; set --cache-views")


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


def make_cache(setup: RunSetup, s: Split) -> FeatureCache:
    """The feature cache of split `s`'s frozen prefix."""
    cfg = setup.cfg
    folder = files.cache_folder(cfg.cache_dir, setup.out)
    # Trials of a search train with their own seeds but draw the cached views with one seed,
    # so they share the cache.
    seed = cfg.resolved_cache_seed
    parts = cache_parts(cfg, setup.pre, s)
    settings = CacheSettings(folder, memory_budget(cfg.cache_memory), cfg.cache_dtype, cfg.batch_size,
                             setup.workers, setup.device, seed, cfg.skip_bad_images)
    return FeatureCache(s.prefix, parts, settings, setup.log)


def cache_parts(cfg: TrainConfig, pre, s: Split) -> dict:
    """What, besides the prefix's weights and the request, keys split `s`'s cached features:
    `edgetune choose` fills its features under the same key as the `--unfreeze auto` probe."""
    seed = cfg.resolved_cache_seed
    return {"arch": cfg.model, "weights": cfg.weights, "split": s.where, "split_index": s.index,
            "preprocess": pre.to_dict(), "seed": seed, "dtype": cfg.cache_dtype}


def build_stage(setup: RunSetup, index: int, unfreeze: str, plan: FreezePlan, epochs: int) -> PreparedStage:
    """Unfreezing stage `index` (training `unfreeze` for `epochs` epochs), its inputs ready:
    cached prefix features where the cache pays and fits, decoded images otherwise."""
    cfg, model = setup.cfg, setup.model
    plan.apply(model)
    s = split(model, cfg.model)
    train = setup.src.train
    cache = plan_cache(cfg, s.index, s.head_only, epochs, len(train) / max(len({x.label for x in train}), 1))
    off = cache.why
    if cache.views:
        inputs = CachedInputs.build(s, make_cache(setup, s), setup.src, setup.pre, cfg, setup.world, cache.views,
                                    setup.class_weights, setup.device)
        if inputs is not None:
            why = (f"cache on: the frozen prefix runs once per image and view instead of every "
                   f"epoch; training runs from {s.where}; views: {cache.why}")
            return PreparedStage(index, unfreeze, plan, inputs, why)
        off = "the features fit neither the memory budget nor the disk"
    inputs = ImageInputs(model, setup.src, setup.pre, cfg, setup.world, setup.workers, setup.class_weights)
    return PreparedStage(index, unfreeze, plan, inputs, f"cache off: {off}")


def resolve_batch(cfg: TrainConfig, train_images: int, world: World, log) -> TrainConfig:
    """`cfg` with its batch resolved for this training set (`TrainConfig.batch_for`), said
    when the default shrank."""
    if cfg.batch_size is not None:
        return cfg
    batch = cfg.batch_for(train_images, world.size)
    if batch < DEFAULT_BATCH:
        share = train_images // world.size
        log(f"edgetune: batch {batch}, not {DEFAULT_BATCH}: {train_images} training images"
            + (f" over {world.size} processes" if world.distributed else "")
            + f" make {_steps(share, DEFAULT_BATCH)} step(s) an epoch at batch {DEFAULT_BATCH}, too few to "
            f"train a new head, and {_steps(share, batch)} at batch {batch} (--batch-size sets it)")
    return replace(cfg, batch_size=batch)


def resolve_for_depth(cfg: TrainConfig, stages, per_class: float, log) -> TrainConfig:
    """`cfg` with the head's learning rate and the epochs resolved for the depth the run trains
    at (after `--unfreeze auto` chose it) and its images a class (`TrainConfig.lr_for`,
    `TrainConfig.epochs_for`), each said when it is not the usual value."""
    head_only = len(stages) == 1 and stages[0].unfreeze == "head"
    tiny = per_class < TINY_IMAGES
    lr = cfg.lr_for(head_only, tiny)
    if cfg.lr is None and lr != DEFAULT_LR:
        why = (f"smaller steps from its imprinted start on under {TINY_IMAGES} images a class"
               if cfg.resolved_head_init == "imprint" else "larger steps from its random start")
        log(f"edgetune: lr {lr:g}, not {DEFAULT_LR:g}: a new head alone on pretrained features takes {why} "
            "(--lr sets it)")
    epochs = cfg.epochs_for(head_only and tiny)
    if cfg.epochs is None and epochs != DEFAULT_EPOCHS:
        log(f"edgetune: {epochs} epochs, not {DEFAULT_EPOCHS}: a new head alone on under {TINY_IMAGES} images a "
            "class learns from each epoch's fresh augmented view of them (--epochs sets it)")
    return replace(cfg, lr=lr, epochs=epochs)


def _steps(images: int, batch: int) -> int:
    return max(1, images // batch)


def resolve_unfreeze(setup: RunSetup, splits) -> AutoChoice:
    """`--unfreeze auto`: the rule of thumb, from images per class and a head-only probe."""
    cfg = setup.cfg
    groups = len(FreezePlan.build(cfg.model, setup.model, "head").groups)
    per_class = len(splits.train) / max(len(splits.classes), 1)
    probe = None if cfg.from_scratch or per_class < TINY_IMAGES else _probe(setup, splits)
    return choose_unfreeze(per_class, probe, cfg.from_scratch, groups)


# Images per class the probe fits and scores on, at most: the probe estimates how well the
# features fit, and on 100k images a full pass would cost as much as an epoch of training.
PROBE_IMAGES_PER_CLASS = 200


def probe_samples(splits, seed: int) -> tuple[list, list]:
    """The train and val images the `--unfreeze auto` probe (and `edgetune choose`) run: up to
    PROBE_IMAGES_PER_CLASS a class of each, a seeded draw over the classes."""
    n = PROBE_IMAGES_PER_CLASS * max(len(splits.classes), 1)
    return stratified_sample(splits.train, n, seed), stratified_sample(splits.val, n, seed)


def _pooled(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) averaged over space; any other shape flattened per image."""
    return features.mean((2, 3)) if features.ndim == 4 else features.flatten(1)


# The cache roles of the probe's images. Its val images are the val split itself wherever that
# holds at most PROBE_IMAGES_PER_CLASS a class, read as training reads val (eval transform, one
# view): named as training's val request, they make one cache entry, filled once a run, where
# they were filled twice (57 photographs through Lite0: 10 s each time here).
PROBE_ROLES = {"train": "probe-train", "val": "val"}


def probe_features(setup: RunSetup, splits, roles: tuple[str, ...] = ("train", "val")):
    """(split, {role: Features or None}): the frozen prefix's outputs below the head, in eval
    mode, for the probe's images of each split in `roles` (`probe_samples`), through the feature
    cache. The `--unfreeze auto` probe scores them, the new head is imprinted from the train
    ones (edgetune.train.imprint), and `edgetune choose` fills the same keys: a run computes
    them once. Leaves the model's freeze plan at "head"; the stage built next sets its own."""
    cfg, pre = setup.cfg, setup.pre
    FreezePlan.build(cfg.model, setup.model, "head").apply(setup.model)
    s = split(setup.model, cfg.model)
    cache = make_cache(setup, s)
    shape = feature_shape(s.prefix, pre.size, setup.device)
    samples = dict(zip(("train", "val"), probe_samples(splits, cfg.seed)))
    return s, {role: cache.get(Request(PROBE_ROLES[role], samples[role], eval_transform(pre), 1, "none"), shape)
               for role in roles}


def _probe(setup: RunSetup, splits) -> float:
    """Val top-1 of a logistic-regression head on the frozen pooled features (cached)."""
    _, got = probe_features(setup, splits)
    train, val = got["train"], got["val"]
    if train is None or val is None:
        return 0.0
    # Pooled over space: a timm model's head starts at its global pool, so the cached prefix
    # output is a feature map (Lite0 at 160 px: 1280x5x5); flattened, the probe of the shipped
    # photographs scored 42.1% where the pooled features give 100%.
    x, xv = (_pooled(torch.from_numpy(np.asarray(c.array[0], np.float32))) for c in (train, val))
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
