"""Quantization-aware fine-tuning: the stage. The trained network fake-quantized as one target's
recipe quantizes it (`edgetune.train.fake_quant`), a few epochs of the layers training left
trainable on the train split, at a schedule derived from the training's own (ModelOpt's rule,
stretched on small data sets), each finished epoch saved so an interrupted stage continues.
Under torchrun rank 0 exports alone; each QAT stage it starts, every process runs on its
share of the images, DistributedDataParallel as in training (`follow`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune.config import TrainConfig
from edgetune.host import loader_processes
from edgetune.preprocess import Preprocess
from edgetune.train import distributed
from edgetune.train.fake_quant import LIBRARY, batchnorm_record, calibrated, traceable
from edgetune.train.freeze import train_unfrozen
from edgetune.train.qat_prefix import PrefixFeatures, prefix_features

EPOCH_SHARE = 0.1  # ModelOpt's rule of thumb: about 10% of the original schedule...
LR_SHARE = 0.01  # ...starting at 1% of the initial learning rate
# ...which on a few hundred images is a handful of steps that cannot change what int8 rounds
# to. AdamW moves a weight by about its lr each step, a cosine schedule by half that on average:
# the default schedule takes at least MIN_STEPS steps and moves a weight by about one int8 step
# (the median over the trainable weights' channels, max |w| / 127). Measured on MobileNetV3-Large's
# TensorRT recipe (BENCHMARKS.md, "The default schedule"): 4 and 20 steps at 1% of the
# training's lr recovered nothing; 20 steps moving about one int8 step recovered it all.
MIN_STEPS = 20
INT8_STEPS_MOVED = 1.0


def drops_last(images: int, batch_size: int) -> bool:
    """Whether QAT's loader drops the last partial batch: only where there is more than one."""
    return images > batch_size


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one QAT epoch (its loader: `drops_last`)."""
    return images // batch_size if drops_last(images, batch_size) else 1


def share_epochs(train_epochs: int) -> int:
    """ModelOpt's share of the training's epochs, at least one."""
    return max(1, round(EPOCH_SHARE * train_epochs))


def default_epochs(train_epochs: int, steps: int) -> int:
    """10% of training's epochs, and enough for MIN_STEPS steps of `steps` an epoch."""
    return max(share_epochs(train_epochs), math.ceil(MIN_STEPS / steps))


def default_lr(train_lr: float, weights: list[torch.Tensor], steps: int) -> float:
    """1% of training's lr, or enough for `steps` cosine-scheduled AdamW steps to move a weight
    by about one int8 step of its channel, whichever is larger."""
    if not weights:  # nothing with a per-channel int8 step trains: ModelOpt's rule alone
        return LR_SHARE * train_lr
    channel_steps = torch.cat([w.detach().flatten(1).abs().amax(1) / 127 for w in weights])
    moves = 2 * INT8_STEPS_MOVED * float(channel_steps.median()) / steps
    return max(LR_SHARE * train_lr, moves)


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0]


def trainable_modules(model: nn.Module, ckpt: dict):
    """The modules whose weights training left trainable (the depth it ended at), and its
    edgetune.train.freeze.FreezePlan."""
    from edgetune.train.freeze import FreezePlan

    tcfg = TrainConfig(**ckpt["config"])
    unfreeze = (ckpt.get("schedule") or [[tcfg.resolved_unfreeze]])[-1][0]
    plan = FreezePlan.build(tcfg.model, model, unfreeze)
    return {_module_of(n) for n in plan.trainable}, plan


@dataclass(frozen=True)
class QatResult:
    model: torch.fx.GraphModule  # fake-quantized, fine-tuned, in eval mode: export it with export.onnx.export_qdq
    record: dict  # the manifest's: epochs, lr, what trained, images, seconds, library


@dataclass(frozen=True)
class QatJob:
    """What QAT needs from a finished training: the checkpoint, its train split (never val:
    val judges the artifacts), the calibration sample that set the PTQ ranges, and the schedule.
    With `state_dir`, each finished epoch is saved there (`qat-RECIPE.pt`), so a stage that was
    interrupted continues from its last epoch when the same job runs again (`--resume`, or the
    same export again); the file goes once the stage is done."""

    ckpt: dict
    train: list  # edgetune.data.scan.Sample
    calibration: list  # the same images that calibrated PTQ
    epochs: int | None = None  # None: default_epochs
    lr: float | None = None  # None: default_lr, from the weights the stage trains
    state_dir: Path | None = None
    cache_dir: Path | None = None  # where the frozen prefix's outputs may be memory-mapped (training's cache)

    @property
    def size(self) -> tuple[int, int]:
        return Preprocess.from_dict(self.ckpt["preprocess"]).size

    def run(self, recipe: str, log=print) -> QatResult:
        """The stage for `recipe`; under torchrun rank 0 calls it and every process runs it."""
        from edgetune.train.model import build_from_checkpoint

        world = distributed.current()
        distributed.ask(world, (self, recipe))  # the others start it too (`follow`)
        share = world.shard(self.train, pad=True)  # DDP steps in lockstep: equal shares
        tcfg = TrainConfig(**self.ckpt["config"])
        torch.manual_seed(tcfg.seed)
        t0 = time.perf_counter()
        pre = Preprocess.from_dict(self.ckpt["preprocess"])
        example = torch.zeros(2, 3, *pre.size)
        model = traceable(build_from_checkpoint(self.ckpt), example)
        modules, plan = trainable_modules(model, self.ckpt)
        described = plan.describe()
        qat = calibrated(model, recipe, example, self.calibration, pre)
        params = [p for n, p in qat.named_parameters() if _module_of(n) in modules]
        for p in qat.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        epochs, lr = self._schedule([p for p in params if p.dim() >= 2], len(share), log)
        log(f"qat: {recipe} recipe, {epochs} epoch(s) at lr {lr:g} on {len(self.train)} train images"
            + (f" ({len(share)} in each of {world.size} processes)" if world.distributed else "")
            + f"; {described} ({sum(p.numel() for p in params):,} parameters)")
        state = None
        if self.state_dir is not None:
            state = EpochState(self.state_dir / f"qat-{recipe}.pt", self._key(recipe, model, epochs, lr), t0)
        workers = loader_processes(tcfg.workers)  # as training decodes
        tag = f"-r{world.rank}of{world.size}" if world.distributed else ""
        cached = prefix_features(qat, modules, plan.trainable_groups == 0, recipe, share, pre, tcfg, epochs,
                                 workers, self.cache_dir, log, tag)
        if cached is not None:
            log(f"qat: {cached.why}")
        losses = _finetune(qat, params, share, pre, epochs, lr, tcfg, workers, log, state, cached, world)
        seconds = time.perf_counter() - t0 + (state.seconds_before if state else 0.0)
        return QatResult(qat, {"epochs": epochs, "lr": lr, "trained": described,
                                "parameters": sum(p.numel() for p in params), "images": len(self.train),
                                "loss": [round(x, 4) for x in losses], "seconds": round(seconds, 1),
                                "processes": world.size, "library": LIBRARY, "batchnorm": batchnorm_record(qat),
                                "inputs": cached.why if cached else "the whole graph every step"})


    def _schedule(self, weights: list[torch.Tensor], images: int, log) -> tuple[int, float]:
        """(epochs, lr): the job's where given, else the defaults for the `images` a process
        trains on, the batch and the weights the stage trains; a default above ModelOpt's rule
        says why."""
        trained = self.ckpt["config"]
        steps = steps_per_epoch(images, trained["batch_size"])
        epochs = self.epochs or default_epochs(trained["epochs"], steps)
        if self.epochs is None and epochs > share_epochs(trained["epochs"]):
            log(f"qat: {epochs} epochs, not 10% of the training's {trained['epochs']}: {steps} step(s) an epoch, "
                f"and QAT takes at least {MIN_STEPS} (--qat-epochs sets it)")
        if self.lr is not None:
            return epochs, self.lr
        lr = default_lr(trained["lr"], weights, epochs * steps)
        if lr > LR_SHARE * trained["lr"]:
            log(f"qat: lr {lr:.2g}, not 1% of the training's {trained['lr']:g}: {epochs * steps} steps at it "
                "move a weight about one int8 step (--qat-lr sets it)")
        return epochs, lr

    def _key(self, recipe: str, model: nn.Module, epochs: int, lr: float) -> str:
        """What makes two QAT stages the same: the starting weights, the recipe, the schedule
        and the images it trains and calibrates on."""
        h = hashlib.sha256(json.dumps([recipe, epochs, lr, self.ckpt["config"],
                                       [str(getattr(s, "path", s)) for s in self.train],
                                       [str(getattr(s, "path", s)) for s in self.calibration]]).encode())
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


class EpochState:
    """One QAT stage's progress on disk: the fake-quant model, optimizer and schedule after
    its last finished epoch, written atomically (edgetune.train.checkpoint.save), and kept
    only while the stage is unfinished."""

    def __init__(self, path: Path, key: str, t0: float):
        self.path, self.key, self.t0, self.seconds_before = path, key, t0, 0.0

    def restore(self, qat, optimizer, scheduler, log) -> tuple[int, list[float]]:
        """(the epochs already done, their losses): 0 and none without a saved stage of this job."""
        from edgetune.train import checkpoint

        if not self.path.is_file():
            return 0, []
        saved = checkpoint.load(self.path)
        if saved.get("key") != self.key:
            log(f"qat: {self.path.name} is another job's (other weights, images or schedule); starting over")
            return 0, []
        qat.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        checkpoint.set_rng_state(saved["rng"])
        self.seconds_before = float(saved["seconds"])
        log(f"qat: continuing from epoch {saved['epoch']} of the interrupted stage ({self.path.name})")
        return int(saved["epoch"]), [float(x) for x in saved["losses"]]

    def save(self, epoch: int, qat, optimizer, scheduler, losses: list[float]) -> None:
        """Rank 0 writes; every process restores from the file, as training's resume does."""
        from edgetune.train import checkpoint

        if not distributed.current().is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(self.path, {"key": self.key, "epoch": epoch, "model": qat.state_dict(),
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": checkpoint.rng_state(), "losses": losses,
                                    "seconds": self.seconds_before + time.perf_counter() - self.t0})

    def done(self) -> None:
        if distributed.current().is_main:
            self.path.unlink(missing_ok=True)


def _finetune(qat, params, train: list, pre: Preprocess, epochs: int, lr: float, tcfg: TrainConfig, workers: int,
              log, state: EpochState | None = None, cached: PrefixFeatures | None = None,
              world: distributed.World | None = None) -> list[float]:
    """QAT's epochs on this process's `train` share: on the cached prefix outputs through
    `cached.suffix`, or on decoded images through the whole graph. Both draw the same batches
    of the same images in the same order, reshuffled every epoch."""
    from edgetune.train.data import EpochSampler, ImageDataset, make_loader, train_transform

    world = world or distributed.World()
    ds = ImageDataset(train, train_transform(pre, tcfg.augment), tcfg.skip_bad_images)
    sampler = EpochSampler(len(ds), tcfg.seed)
    drop = drops_last(len(ds), tcfg.batch_size)
    if cached is None:
        loader = make_loader(ds, tcfg.batch_size, workers, drop_last=drop, sampler=sampler)
    else:
        loader = torch.utils.data.BatchSampler(sampler, tcfg.batch_size, drop_last=drop)
        labels = torch.from_numpy(cached.features.labels)
    group = distributed.cpu_group() if world.distributed else None  # QAT runs on the CPU: gloo
    step_module = _wrapped(qat if cached is None else cached.suffix, group)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = max(1, epochs * len(loader))
    # Cosine from the small starting rate: the network is already trained, QAT only adjusts it.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    criterion = nn.CrossEntropyLoss(label_smoothing=tcfg.label_smoothing)
    start, losses = state.restore(qat, optimizer, scheduler, log) if state else (0, [])
    for epoch in range(start, epochs):
        train_unfrozen(qat)
        sampler.set_position(epoch)
        running, n = 0.0, 0
        for batch in loader:
            if cached is None:
                x, y = batch
                logits = step_module(x)
            else:
                index = np.asarray(batch)
                logits, y = step_module(cached.batch(index, epoch)), labels[index]
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running, n = running + loss.item() * len(y), n + len(y)
        running, n = world.sum(running, n, group=group)
        losses.append(running / max(n, 1))
        if state:
            state.save(epoch + 1, qat, optimizer, scheduler, losses)
        log(f"qat: epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f}")
    if state:
        state.done()
    qat.eval()
    return losses


def _wrapped(module: nn.Module, group) -> nn.Module:
    """The module QAT's step calls: DistributedDataParallel on `group` under torchrun."""
    if group is None:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, process_group=group)


def follow(world: distributed.World) -> None:
    """Under torchrun, a process other than rank 0 while rank 0 exports: it runs its share of
    each QAT stage rank 0 starts (`QatJob.run`), silently, until the export is over."""
    distributed.follow(world, lambda request: request[0].run(request[1], log=distributed.quiet))
