"""Self-training (`--adapt pseudo`): label the target images the model is sure of, fine-tune
on the source plus those, relabel every epoch.

The labels come from the model with target BatchNorm statistics (bn first): under a camera
shift the source statistics make a model confidently wrong (measured on the shifted digits:
chance accuracy, many images above 0.9 confidence), and training on those labels would teach
the shift's errors. After the last epoch the statistics are re-estimated on the target
images once more, since training batches mix both domains. Each epoch's state is saved, so
an interrupted run resumes after its last finished epoch.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn

from edgetune.config import AdaptConfig, TrainConfig
from edgetune.data.scan import Sample
from edgetune.data.sources import scan_sources
from edgetune.errors import DataError
from edgetune.files import PSEUDO_STATE as STATE
from edgetune.host import loader_processes
from edgetune.preprocess import Preprocess
from edgetune.train import checkpoint
from edgetune.train.bn_adapt import adapt_bn, all_batchnorms
from edgetune.train.data import ImageDataset, image_loader, make_loader, train_transform
from edgetune.train.freeze import FreezePlan
from edgetune.train.optim import make_optimizer

LR_SCALE = 0.1  # a fine-tune of a trained model: a tenth of the training rate


@torch.no_grad()
def pseudo_label(model: nn.Module, images: list[Path], pre: Preprocess, threshold: float,
                 device) -> list[Sample]:
    """The target images whose top softmax probability is at least `threshold`, with that class."""
    labeller = copy.deepcopy(model)
    if all_batchnorms(labeller):
        adapt_bn(labeller, image_loader(images, pre), device)
    labeller.eval()
    picked, start = [], 0
    for x, _ in image_loader(images, pre):
        conf, label = labeller(x.to(device)).float().softmax(1).max(1)
        for i in torch.nonzero(conf >= threshold).flatten().tolist():
            picked.append(Sample(images[start + i], int(label[i])))
        start += len(x)
    return picked


def self_train(ckpt: dict, model: nn.Module, images: list[Path], cfg: AdaptConfig, device,
               work: Path | None, log=print) -> dict:
    """Fine-tune `model` (trained on the source) on source + pseudo-labelled target for
    `cfg.pseudo_epochs` epochs; returns the adaptation record."""
    tcfg = TrainConfig(**ckpt["config"])
    try:
        splits = scan_sources(tcfg)
    except DataError as exc:
        raise DataError(f"--adapt pseudo fine-tunes on the source data as well, and it is not usable "
                        f"here ({exc})") from None
    pre = Preprocess.from_dict(ckpt["preprocess"])
    # The depth the model ended training at (--unfreeze auto and schedules are resolved there).
    unfreeze = (ckpt.get("schedule") or [[tcfg.resolved_unfreeze]])[-1][0]
    plan = FreezePlan.build(tcfg.model, model, unfreeze)
    plan.apply(model)
    optimizer = make_optimizer(model, plan, dataclasses.replace(tcfg, lr=tcfg.lr * LR_SCALE))
    criterion = nn.CrossEntropyLoss(label_smoothing=tcfg.label_smoothing)
    # The state belongs to one trained model and one set of settings: anything else starts over.
    settings = {"threshold": cfg.pseudo_threshold, "epochs": cfg.pseudo_epochs, "images": len(images),
                "source": [ckpt.get("epoch"), ckpt.get("metrics")]}
    state_path = Path(work) / STATE if work is not None else None
    history, start = _resume(state_path, settings, model, optimizer, log)
    for epoch in range(start, cfg.pseudo_epochs):
        labelled = pseudo_label(model, images, pre, cfg.pseudo_threshold, device)
        ds = ImageDataset(splits.train + labelled, train_transform(pre, tcfg.augment), tcfg.skip_bad_images)
        loader = make_loader(ds, tcfg.batch_size, loader_processes(), drop_last=len(ds) > tcfg.batch_size,
                             sampler=torch.utils.data.RandomSampler(
                                 ds, generator=torch.Generator().manual_seed(tcfg.seed * 7919 + epoch)))
        loss = _epoch(model, plan, loader, criterion, optimizer, device)
        history.append({"epoch": epoch + 1, "pseudo_labelled": len(labelled), "train_loss": round(loss, 4)})
        log(f"adapt: pseudo epoch {epoch + 1}/{cfg.pseudo_epochs}: {len(labelled)}/{len(images)} target "
            f"images at confidence >= {cfg.pseudo_threshold:g}, loss {loss:.4f}")
        if state_path is not None:
            checkpoint.save(state_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "epoch": epoch + 1, "history": history, "settings": settings})
    if all_batchnorms(model):
        adapt_bn(model, image_loader(images, pre), device)
    model.eval()
    return {"applied": "pseudo", "threshold": cfg.pseudo_threshold, "epochs": cfg.pseudo_epochs,
            "history": history}


def _epoch(model, plan, loader, criterion, optimizer, device) -> float:
    plan.set_train_mode(model)
    total, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, n = total + loss.item() * len(y), n + len(y)
    return total / max(n, 1)


def _resume(path: Path | None, settings: dict, model, optimizer, log) -> tuple[list, int]:
    if path is None or not path.is_file():
        return [], 0
    state = checkpoint.load(path)
    if state.get("settings") != settings:
        log(f"adapt: {path} was made with other pseudo settings; self-training starts over")
        return [], 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log(f"adapt: pseudo resumed after epoch {state['epoch']} from {path}")
    return list(state["history"]), int(state["epoch"])
