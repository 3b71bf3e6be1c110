"""The trainer: fine-tune the head and top blocks, evaluate every epoch, keep the best.

CPU or CUDA (bf16/fp16 autocast there), one process or torchrun DDP, AdamW or SGD, warm-up +
cosine, label smoothing, weight decay (not on norms and biases), class balancing, early
stopping, gradual unfreezing, the frozen prefix cached, seeded and resumable.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune import config as cfgmod
from edgetune.config import TrainConfig
from edgetune.data.scan import Splits
from edgetune.data.sources import scan_sources
from edgetune.data.subsets import adaptation_subset
from edgetune.defaults import DEFAULT_EPOCHS
from edgetune.errors import DataError, EdgetuneError
from edgetune.files import CHECKPOINT_BEST as BEST
from edgetune.files import CHECKPOINT_LAST as LAST
from edgetune.host import loader_processes
from edgetune.train import checkpoint, distributed
from edgetune.train.bn_adapt import adapt_batchnorm, slow_batchnorms
from edgetune.train.cache import check_writable
from edgetune.train.data import class_weights
from edgetune.train.freeze import FreezePlan
from edgetune.train.imprint import head_linear, imprint
from edgetune.train.inputs import Sources, sequential
from edgetune.train.interrupt import Interrupted, SaveOnInterrupt
from edgetune.train.model import create_model, param_groups, preprocess_for
from edgetune.train.optim import make_optimizer, make_scheduler
from edgetune.train.prepare import (
    RunSetup,
    build_stage,
    probe_features,
    resolve_batch,
    resolve_for_depth,
    resolve_unfreeze,
)
from edgetune.train.resume import RunState, restore
from edgetune.train.schedule import check_depths, default_unfreeze, random_frozen, stage_at
from edgetune.unfreeze_schedule import UnfreezeStage, parse_schedule

__all__ = ["BEST", "LAST", "Interrupted", "DivergedError", "TrainResult", "train", "evaluate",
           "load_splits"]


class DivergedError(EdgetuneError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class StepContext:
    """What every training step uses and no step changes: the loss, the optimisation state's
    owners, the device and precision, and the run's ways to save and stop."""
    model: nn.Module  # the whole model (train/eval modes are set on it)
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: torch.dtype | None  # autocast dtype on CUDA, None on the CPU
    world: object  # distributed.World
    cfg: TrainConfig
    save_last: object  # () -> None: writes last.pt
    stop: object = None  # SaveOnInterrupt: stops between steps on Ctrl-C


@dataclass
class TrainResult:
    best: Path
    last: Path
    best_top1: float
    epochs: int
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    config: TrainConfig | None = None  # as it ran: the batch and learning rate resolved


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, log=print,
          command: str = "run", target_labels: str | None = None, on_epoch=None,
          splits: Splits | None = None) -> TrainResult:
    """Train per `cfg`, writing checkpoints under `out`; `resume` continues from out/last.pt.
    `command`: the `edgetune` subcommand that Ctrl-C's resume hint names. Under torchrun,
    every process trains its share and only rank 0 writes or logs.
    `target_labels`: a folder of labelled target-domain images trained on beside the source.
    `on_epoch(record)`: called after each epoch's checkpoint with its history record; it may
    raise to stop training there (a search's pruner does).
    `splits`: the data as `scan_sources(cfg, target_labels)` found it, when the caller scanned
    it already (`pipeline.check_inputs` does, before PyTorch loads)."""
    with distributed.initialized(cfg.device) as (world, device):
        return _train(cfg, Path(out), resume, log if world.is_main else distributed.quiet, command, world, device,
                      target_labels, on_epoch, splits)


def _train(cfg, out, resume, log, command, world, device, target_labels=None, on_epoch=None,
           splits=None) -> TrainResult:
    if cfg.cache != "off" and cfg.cache_dir is not None:
        check_writable(Path(cfg.cache_dir))
    splits = splits or scan_sources(cfg, target_labels)  # every --data folder, balanced per source
    cfg = resolve_batch(cfg, len(splits.train), world, log)
    pre = preprocess_for(cfg.model, cfg.weights, cfg.image_size)
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
    model = create_model(cfg.model, cfg.weights, len(splits.classes), cfg.dropout, log).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    workers = loader_processes(cfg.workers)
    saved = checkpoint.load(out / LAST) if resume and (out / LAST).is_file() else None
    setup = RunSetup(cfg, model, out, pre, world, workers, device, log)
    stages = _stages(setup, splits, saved)
    cfg = resolve_for_depth(cfg, stages, len(splits.train) / max(len(splits.classes), 1), log)
    setup = dataclasses.replace(setup, cfg=cfg)
    plans = [FreezePlan.build(cfg.model, model, s.unfreeze) for s in stages]
    log(f"edgetune: {cfg.model} ({cfg.weights}) on {device}"
        + (f" × {world.size} processes" if world.distributed else "")
        + f": {len(splits.classes)} classes, {len(splits.train)} train / {len(splits.val)} val images, "
        + ", then ".join(f"{p.describe()} from epoch {s.first_epoch + 1}" if len(stages) > 1
                         else p.describe() for s, p in zip(stages, plans)))

    weights = class_weights(splits.train, len(splits.classes))
    # The optimizer holds every parameter any stage trains; frozen ones get no gradient, and
    # AdamW and SGD skip a parameter without one, so a later stage's blocks join when unfrozen.
    plans[-1].apply(model)
    optimizer = make_optimizer(model, plans[-1], cfg)
    src = _sources(cfg, model, splits, world)
    setup = dataclasses.replace(setup, src=src, class_weights=weights)
    if src.bn:
        log(f"edgetune: {len(slow_batchnorms(model))} BatchNorm layers have momentum < 0.1: their "
            f"statistics are re-estimated on {len(src.bn)} training images after every epoch")
    current = None

    def activate(epoch: int):
        i = stage_at(stages, epoch)
        nonlocal current
        if current is None or current.index != i:
            end = stages[i + 1].first_epoch if i + 1 < len(stages) else cfg.epochs
            log(f"edgetune: stage {i + 1}/{len(stages)}, epochs {stages[i].first_epoch + 1}-{end}: "
                f"{plans[i].describe()}")
            current = build_stage(setup, i, stages[i].unfreeze, plans[i], end - stages[i].first_epoch)
            # Wrapped once per stage: DDP registers the stage's parameters, compile traces once.
            current.step_module = _wrap(current.inputs.module, cfg, world, device)
            log(f"edgetune: {current.why}")
        return current

    if saved is None and cfg.resolved_head_init == "imprint":  # a resumed run has its head
        _imprint(setup, splits)
    steps_per_epoch = activate(saved["epoch"] if saved else 0).inputs.steps_per_epoch()
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(weight=weights.to(device) if cfg.balance == "loss" else None,
                                    label_smoothing=cfg.label_smoothing)
    amp = _amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    meta = {"arch": cfg.model, "weights": cfg.weights, "classes": splits.classes,
            "preprocess": pre.to_dict(), "config": cfgmod.to_dict(cfg),
            "schedule": [[s.unfreeze, s.first_epoch] for s in stages]}

    state = RunState()
    if saved is not None:
        state = restore(out / LAST, saved, model, optimizer, scheduler, scaler, meta)
        log(f"edgetune: resumed from {out / LAST} at epoch {state.epoch + 1}, step {state.step}")

    def save_last():
        if world.is_main:
            checkpoint.save(out / LAST, {**meta, "model": model.state_dict(),
                                         "optimizer": optimizer.state_dict(),
                                         "scheduler": scheduler.state_dict(),
                                         "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                                         **state.to_dict()})

    stopped_early = False
    with SaveOnInterrupt(save_last, out, command) as stop:
        ctx = StepContext(model, criterion, optimizer, scheduler, scaler, device, amp, world, cfg,
                          save_last, stop)
        while state.epoch < cfg.epochs:
            stop.check()
            epoch = state.epoch
            stage = activate(epoch)
            t0 = time.perf_counter()
            loss = train_one_epoch(ctx, stage, state)
            # Evaluation changes no state, and the BatchNorm re-estimate starts from a reset
            # on fixed images, so a resumed run redoes it identically: a Ctrl-C may stop either.
            with stop.at_once():
                bn_layers = slow_batchnorms(model) if cfg.bn_adapt_batches else []
                if bn_layers and stage.inputs.bn_batches() is not None:
                    adapt_batchnorm(stage.inputs.module, bn_layers, stage.inputs.bn_batches(), device)
                metrics = evaluate(stage.inputs.module, stage.inputs.val_batches(), device, criterion,
                                   world)
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "train_loss": round(loss, 4), **metrics,
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
                      "stage": stage.index + 1, "unfreeze": stage.unfreeze,
                      "cached": stage.inputs.cached}
            state.history.append(record)
            state.epoch, state.step = epoch + 1, 0
            improved = metrics["top1"] > state.best_top1
            if improved:
                state.best_top1, state.bad_epochs = metrics["top1"], 0
                if world.is_main:
                    checkpoint.save(out / BEST, {**meta, "model": model.state_dict(),
                                                 "epoch": epoch + 1, "metrics": metrics})
            else:
                state.bad_epochs += 1
            save_last()
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {loss:.4f}  val top-1 {metrics['top1']:.2%}  "
                f"top-5 {metrics['top5']:.2%}  {seconds:.1f}s" + ("  *best" if improved else ""))
            if on_epoch is not None:
                on_epoch(record)
            if cfg.patience and state.bad_epochs >= cfg.patience:
                log(f"edgetune: early stop: no val top-1 gain for {cfg.patience} epochs")
                stopped_early = True
                break
    world.barrier()  # nobody leaves (and exports) before rank 0 has written the checkpoints
    return TrainResult(out / BEST, out / LAST, state.best_top1, state.epoch, state.history, stopped_early, cfg)


def _imprint(setup: RunSetup, splits) -> None:
    """The new head set from the class means of the probe's training images' features (cached:
    `--unfreeze auto`'s probe filled them already where it ran). Every process computes the
    same means from the same images, as every process runs the probe."""
    cfg, model = setup.cfg, setup.model
    s, got = probe_features(setup, splits, roles=("train",))
    if got["train"] is None:
        setup.log("edgetune: the head starts at random: the features to imprint it from fit neither memory nor disk")
        return
    head = head_linear(model, param_groups(cfg.model, model).head)
    done = imprint(s.suffix, head, sequential(got["train"], cfg.batch_size), len(splits.classes),
                   cfg.label_smoothing, setup.device)
    setup.log(f"edgetune: {done.describe()}" if done else "edgetune: the head starts at random: a class has no "
              "training image")


def _stages(setup: RunSetup, splits, saved) -> tuple[UnfreezeStage, ...]:
    """The unfreezing stages (--unfreeze-schedule, or one stage of --unfreeze, its default and
    auto resolved), with a warning when training from scratch leaves random blocks frozen."""
    cfg = setup.cfg
    groups = len(FreezePlan.build(cfg.model, setup.model, "head").groups)
    stages = _chosen_stages(setup, splits, saved, groups)
    warning = random_frozen(stages, groups) if cfg.from_scratch else None
    if warning:
        setup.log(f"edgetune: warning: {warning}")
    return stages


def _chosen_stages(setup: RunSetup, splits, saved, groups: int) -> tuple[UnfreezeStage, ...]:
    cfg = setup.cfg
    if cfg.unfreeze_schedule:
        stages = parse_schedule(cfg.unfreeze_schedule, cfg.epochs or DEFAULT_EPOCHS)
        check_depths(stages, groups, cfg.model, "--unfreeze-schedule")
        return stages
    if cfg.unfreeze is None and cfg.from_scratch:
        choice = default_unfreeze(cfg)
        setup.log(f"edgetune: {choice.why}")
        return (UnfreezeStage(choice.unfreeze, 0),)
    if cfg.resolved_unfreeze != "auto":
        check_depths((UnfreezeStage(cfg.unfreeze, 0),), groups, cfg.model, "--unfreeze")
        return (UnfreezeStage(cfg.unfreeze, 0),)
    if saved is not None:  # a resumed run keeps the depth it chose
        return tuple(UnfreezeStage(u, e) for u, e in saved["schedule"])
    choice = resolve_unfreeze(setup, splits)
    default = " (the default with pretrained weights)" if cfg.unfreeze is None else ""
    setup.log(f"edgetune: --unfreeze auto{default} chose {choice.unfreeze}: {choice.why}")
    return (UnfreezeStage(choice.unfreeze, 0),)


def _sources(cfg, model, splits: Splits, world) -> Sources:
    """This process's train share (padded to equal length under torchrun), its val share, and
    the fixed images slow BatchNorm statistics are re-estimated on."""
    bn = []
    if cfg.bn_adapt_batches and slow_batchnorms(model):
        bn = adaptation_subset(splits.train, cfg.bn_adapt_batches * cfg.batch_size, cfg.seed)
    # Uncached training shards through its sampler; cached training owns a fixed share.
    return Sources(splits.train, world.shard(splits.val, pad=False), bn)


def _wrap(module: nn.Module, cfg, world, device) -> nn.Module:
    """The module the training step calls: compiled and/or DDP-wrapped when asked."""
    if cfg.compile:
        module = torch.compile(module)
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)
    return module


def _amp_dtype(device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    # bf16 needs no loss scaling; fp16 (pre-Ampere GPUs, older Jetsons) does.
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_one_epoch(ctx: StepContext, stage, state: RunState) -> float:
    """One epoch of `stage` (a PreparedStage) from `state.step` on; `state.step` counts the
    steps as they finish, so a checkpoint taken at any step resumes there. Returns the mean loss."""
    cfg, device, amp = ctx.cfg, ctx.device, ctx.amp
    stage.plan.set_train_mode(ctx.model)
    total, count = 0.0, 0
    batches = stage.inputs.train_batches(state.epoch, state.step)
    bar = _progress(batches, state.epoch + 1, cfg.epochs, stage.inputs.steps_per_epoch() - state.step)
    for inputs, labels in _guard(bar):
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if device.type == "cuda" and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = ctx.criterion(stage.step_module(inputs), labels)
        if not torch.isfinite(loss):
            saved = state.epoch > 0 or (cfg.checkpoint_every and state.step >= cfg.checkpoint_every)
            raise DivergedError(
                f"the loss became {loss.item()} at epoch {state.epoch + 1}, step {state.step + 1}; "
                + ("the last good checkpoint is kept" if saved else "no checkpoint was written yet")
                + ": lower --lr (e.g. by 10x) or raise --warmup-epochs"
            )
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
        ctx.scheduler.step()
        state.step += 1
        total += loss.item() * len(labels)
        count += len(labels)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / count:.4f}")
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            ctx.save_last()
        if ctx.stop is not None:
            ctx.stop.check()  # between steps: the state a checkpoint here would hold
    total, count = ctx.world.sum(total, count)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model, batches, device, criterion=None, world=None) -> dict:
    """Top-1, top-5 and mean loss of `model` over `batches` (summed over processes)."""
    model.eval()
    correct1 = correct5 = n = 0
    loss_sum = 0.0
    for inputs, labels in _guard(batches):
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs).float()
        if criterion is not None:
            loss_sum += criterion(logits, labels).item() * len(labels)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        n += len(labels)
    if world is not None:
        correct1, correct5, n, loss_sum = world.sum(correct1, correct5, n, loss_sum)
    return {"top1": round(correct1 / n, 4), "top5": round(correct5 / n, 4),
            "val_loss": round(loss_sum / n, 4)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_splits(ckpt: dict, data: str | None = None) -> Splits:
    """The same train/val split the checkpoint was trained on (or on `data`)."""
    c = ckpt["config"]
    cfg = TrainConfig(**{**c, "data": data or c.get("data")})
    splits = scan_sources(cfg)  # the same files left out as in training
    if splits.classes != ckpt["classes"]:
        raise DataError(
            f"the data's classes {splits.classes} differ from the checkpoint's {ckpt['classes']}; "
            "pass the --data the model was trained on"
        )
    return splits


def _progress(batches, epoch: int, epochs: int, total: int):
    from edgetune import progress

    # A bar on a terminal; elsewhere the epoch's log line is its one line.
    return progress.track(batches, f"epoch {epoch}/{epochs}", total=total, unit="batch", line=False)


def _guard(loader):
    """Re-raise a DataError from a loader worker as itself, not wrapped in worker traceback."""
    try:
        yield from loader
    except DataError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        last = lines[-1] if lines else str(exc)
        raise DataError(last.split("DataError: ", 1)[-1]) from None
