"""How the trainable parameters move: the optimizer's parameter groups (the head at --lr,
unfrozen blocks at lr x --backbone-lr-scale, no decay on norms and biases) and the warm-up +
cosine schedule over the run's steps."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgetune.config import TrainConfig
from edgetune.train.freeze import FreezePlan


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
