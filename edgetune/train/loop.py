"""The trainer: fine-tune the head and top blocks, evaluate every epoch, keep the best.

CPU or CUDA (autocast there), AdamW or SGD, warm-up + cosine, label smoothing, weight
decay (not on norms and biases), class balancing, early stopping, seeded and resumable.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune import config as cfgmod
from edgetune.train import checkpoint
from edgetune.train.bn_adapt import adapt_batchnorm, adaptation_subset, slow_batchnorms
from edgetune.config import TrainConfig
from edgetune.train.data import (EpochSampler, ImageDataset, class_weights, default_workers,
                           eval_transform, make_loader, train_transform)
from edgetune.dataset_scan import Splits, scan
from edgetune.errors import DataError, EdgetuneError
from edgetune.train.freeze import FreezePlan
from edgetune.train.model import create_model, preprocess_for

LAST, BEST = "checkpoints/last.pt", "checkpoints/best.pt"


class DivergedError(EdgetuneError):
    """The loss became NaN or infinite."""


class Interrupted(EdgetuneError):
    """Ctrl-C: the state was saved; the message says how to resume."""


@dataclass
class TrainResult:
    best: Path
    last: Path
    best_top1: float
    epochs: int
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, log=print,
          command: str = "run") -> TrainResult:
    """Train per `cfg`, writing checkpoints under `out`; `resume` continues from out/last.pt.
    `command`: the `edgetune` subcommand that Ctrl-C's resume hint names."""
    out = Path(out)
    splits = scan(data_dir(cfg), cfg.val_fraction, cfg.seed, verify_images=cfg.verify_images,
                  skip_bad_images=cfg.skip_bad_images)
    pre = preprocess_for(cfg.model, cfg.weights, cfg.image_size)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model = create_model(cfg.model, cfg.weights, len(splits.classes), cfg.dropout)
    plan = FreezePlan.build(cfg.model, [n for n, _ in model.named_parameters()], cfg.unfreeze)
    plan.apply(model)
    model.to(device)
    log(f"edgetune: {cfg.model} ({cfg.weights}) on {device}: {len(splits.classes)} classes, "
        f"{len(splits.train)} train / {len(splits.val)} val images, {plan.describe()}")

    workers = default_workers() if cfg.workers is None else cfg.workers
    sampler = EpochSampler(len(splits.train), cfg.seed)
    loader_rng = torch.Generator()  # seeds the loader workers, re-seeded per epoch
    weights = class_weights(splits.train, len(splits.classes))
    train_ds = ImageDataset(splits.train, train_transform(pre, cfg.augment), cfg.skip_bad_images)
    train_loader = make_loader(train_ds, cfg.batch_size, workers,
                               sampler=None if cfg.balance == "sampler" else sampler,
                               balance=weights if cfg.balance == "sampler" else None, seed=cfg.seed,
                               # A last batch of one breaks BatchNorm in training mode.
                               drop_last=len(splits.train) > cfg.batch_size, generator=loader_rng)
    val_loader = make_loader(ImageDataset(splits.val, eval_transform(pre), cfg.skip_bad_images), cfg.batch_size,
                             workers)

    bn_layers = slow_batchnorms(model) if cfg.bn_adapt_batches else []
    bn_loader = None
    if bn_layers:
        subset = adaptation_subset(splits.train, cfg.bn_adapt_batches * cfg.batch_size, cfg.seed)
        bn_loader = make_loader(ImageDataset(subset, eval_transform(pre), cfg.skip_bad_images),
                                cfg.batch_size, workers)
        log(f"edgetune: {len(bn_layers)} BatchNorm layers have momentum < 0.1: their statistics "
            f"are re-estimated on {len(subset)} training images after every epoch")

    optimizer = make_optimizer(model, plan, cfg)
    steps_per_epoch = len(train_loader)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(
        weight=weights.to(device) if cfg.balance == "loss" else None,
        label_smoothing=cfg.label_smoothing,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    meta = {"arch": cfg.model, "weights": cfg.weights, "classes": splits.classes,
            "preprocess": pre.to_dict(), "config": cfgmod.to_dict(cfg)}

    state = {"epoch": 0, "step": 0, "best_top1": -1.0, "history": [], "bad_epochs": 0}
    if resume and (out / LAST).is_file():
        state = _restore(out / LAST, model, optimizer, scheduler, scaler, meta)
        log(f"edgetune: resumed from {out / LAST} at epoch {state['epoch'] + 1}, step {state['step']}")

    def save_last():
        checkpoint.save(out / LAST, {**meta, "model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(),
                                     "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                                     **state})

    stopped_early = False
    with _SaveOnInterrupt(save_last, out, command) as stop:
        while state["epoch"] < cfg.epochs:
            stop.check()
            epoch = state["epoch"]
            sampler.set_position(epoch, state["step"] * cfg.batch_size)  # skip the batches done
            loader_rng.manual_seed(cfg.seed * 100_003 + epoch)
            t0 = time.perf_counter()
            loss = train_one_epoch(model, plan, train_loader, criterion, optimizer, scheduler, scaler,
                                   device, state, cfg, save_last, log, stop)
            # Evaluation changes no state, and the BatchNorm re-estimate starts from a reset
            # on fixed images, so a resumed run redoes it identically: a Ctrl-C may stop either.
            with stop.at_once():
                if bn_loader is not None:
                    adapt_batchnorm(model, bn_layers, bn_loader, device)
                metrics = evaluate(model, val_loader, device, criterion)
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "train_loss": round(loss, 4), **metrics,
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2)}
            state["history"].append(record)
            state["epoch"], state["step"] = epoch + 1, 0
            improved = metrics["top1"] > state["best_top1"]
            if improved:
                state["best_top1"], state["bad_epochs"] = metrics["top1"], 0
                checkpoint.save(out / BEST, {**meta, "model": model.state_dict(), "epoch": epoch + 1,
                                             "metrics": metrics})
            else:
                state["bad_epochs"] += 1
            save_last()
            log(f"epoch {epoch + 1}/{cfg.epochs}  loss {loss:.4f}  val top-1 {metrics['top1']:.2%}  "
                f"top-5 {metrics['top5']:.2%}  {seconds:.1f}s" + ("  *best" if improved else ""))
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                log(f"edgetune: early stop: no val top-1 gain for {cfg.patience} epochs")
                stopped_early = True
                break
    return TrainResult(out / BEST, out / LAST, state["best_top1"], state["epoch"],
                       state["history"], stopped_early)


def train_one_epoch(model, plan, loader, criterion, optimizer, scheduler, scaler, device, state,
                    cfg: TrainConfig, save_last, log, stop=None) -> float:
    plan.set_train_mode(model)
    total, count = 0.0, 0
    bar = _progress(loader, state["epoch"] + 1, cfg.epochs)
    for images, labels in _guard(bar):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = criterion(model(images), labels)
        if not torch.isfinite(loss):
            saved = state["epoch"] > 0 or (cfg.checkpoint_every and state["step"] >= cfg.checkpoint_every)
            raise DivergedError(
                f"the loss became {loss.item()} at epoch {state['epoch'] + 1}, step {state['step'] + 1}; "
                + ("the last good checkpoint is kept" if saved else "no checkpoint was written yet")
                + ": lower --lr (e.g. by 10x) or raise --warmup-epochs"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        state["step"] += 1
        total += loss.item() * len(labels)
        count += len(labels)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / count:.4f}")
        if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
            save_last()
        if stop is not None:
            stop.check()  # between steps: the state a checkpoint here would hold
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model, loader, device, criterion=None) -> dict:
    """Top-1, top-5 and mean loss of `model` over `loader`."""
    model.eval()
    correct1 = correct5 = n = 0
    loss_sum = 0.0
    for images, labels in _guard(loader):
        images, labels = images.to(device), labels.to(device)
        logits = model(images).float()
        if criterion is not None:
            loss_sum += criterion(logits, labels).item() * len(labels)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        n += len(labels)
    return {"top1": round(correct1 / n, 4), "top5": round(correct5 / n, 4),
            "val_loss": round(loss_sum / n, 4)}


def make_optimizer(model: nn.Module, plan: FreezePlan, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Head at --lr, unfrozen backbone blocks at lr × backbone scale; no decay on norms/biases."""
    head = set(plan.head)
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = cfg.lr if name in head else cfg.lr * cfg.resolved_backbone_lr_scale
        decay = cfg.weight_decay if p.ndim > 1 else 0.0
        groups.setdefault((lr, decay), []).append(p)
    params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr)


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    total = max(cfg.epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def data_dir(cfg: TrainConfig) -> Path:
    if cfg.data is not None:
        return Path(cfg.data)
    from edgetune.demo_data import ensure_digits

    return ensure_digits()


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise EdgetuneError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_splits(ckpt: dict, data: str | None = None) -> Splits:
    """The same train/val split the checkpoint was trained on (or on `data`)."""
    c = ckpt["config"]
    cfg = TrainConfig(**{**c, "data": data or c.get("data")})
    splits = scan(data_dir(cfg), cfg.val_fraction, cfg.seed, verify_images=cfg.verify_images,
                  skip_bad_images=cfg.skip_bad_images)  # the same files left out as in training
    if splits.classes != ckpt["classes"]:
        raise DataError(
            f"the data's classes {splits.classes} differ from the checkpoint's {ckpt['classes']}; "
            "pass the --data the model was trained on"
        )
    return splits


def _restore(path, model, optimizer, scheduler, scaler, meta) -> dict:
    ckpt = checkpoint.load(path)
    if ckpt["arch"] != meta["arch"] or ckpt["classes"] != meta["classes"]:
        raise EdgetuneError(
            f"--resume: {path} holds {ckpt['arch']} for classes {ckpt['classes']}, not this run's "
            f"{meta['arch']}; resume with the same --model and --data, or use --overwrite"
        )
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EdgetuneError(
            f"--resume: {path} was trained with other settings ({str(exc).splitlines()[0][:80]}); "
            "resume without changing --model, --weights, --unfreeze, --optimizer or --dropout, or use --overwrite"
        ) from None
    checkpoint.set_rng_state(ckpt["rng"])
    return {k: ckpt[k] for k in ("epoch", "step", "best_top1", "history", "bad_epochs")}


def _progress(loader, epoch: int, epochs: int):
    if not sys.stderr.isatty():
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False, unit="batch")


def _guard(loader):
    """Re-raise a DataError from a loader worker as itself, not wrapped in worker traceback."""
    try:
        yield from loader
    except DataError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        last = lines[-1] if lines else str(exc)
        raise DataError(last.split("DataError: ", 1)[-1]) from None


class _SaveOnInterrupt:
    """Ctrl-C stops training at the next step boundary, saves, and names the resume command.

    Only between steps do the weights, step count, RNG and BatchNorm statistics agree (a batch
    half drawn or a forward half run has moved some of them), so the signal is held until then
    and the resume is exact. A second Ctrl-C stops at once and keeps the last checkpoint.
    """

    def __init__(self, save, out: Path, command: str):
        self.save, self.out, self.command = save, out, command
        self.requested = self.forced = self.anytime = False
        self.previous = None

    def __enter__(self):
        # Only the main thread can take signals; a SIGINT the caller ignores or handles stays theirs.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, *_):
        if self.anytime:
            raise KeyboardInterrupt
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Stop here if Ctrl-C was pressed: call only where the state is consistent."""
        if self.requested:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def at_once(self):
        """A block that changes no training state: Ctrl-C stops it immediately."""
        self.check()
        self.anytime = True
        try:
            yield
        finally:
            self.anytime = False

    def __exit__(self, exc_type, exc, tb):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if exc_type is not KeyboardInterrupt:
            return False
        resume = f"resume with: edgetune {self.command} --resume --out {self.out}"
        if self.forced:
            kept = (f"{self.out / LAST} keeps the last checkpoint" if (self.out / LAST).is_file()
                    else "no checkpoint was written yet")
            raise Interrupted(f"interrupted twice: stopped without saving, {kept}; {resume}") from None
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C must not cut the save
        try:
            self.save()
        finally:  # a notebook's kernel must still answer the next Ctrl-C
            signal.signal(signal.SIGINT, previous)
        raise Interrupted(f"interrupted; state saved to {self.out / LAST}; {resume}") from None
