"""Re-estimate BatchNorm statistics at the end of every epoch of a short fine-tune.

torchvision's MobileNetV3 ships BatchNorm with momentum 0.01: its running statistics move
1% per step, so after a few hundred steps of fine-tuning they still describe the old
weights, and evaluation (and the exported graph) runs on statistics that no longer fit.
Measured: mobilenet_v3_small trained 3 epochs from scratch on the digits at 224 px scored
chance (10.0% top-1) with its own statistics.
Recomputing them as a plain average over a fixed set of training images, in eval-time
conditions (dropout off, eval transform), is cheap and deterministic (NNCF calls it
BatchNorm adaptation). Layers with the usual momentum (0.1, ResNet) keep theirs.

The same machinery, over every BatchNorm layer and images from the deployment camera, is
AdaBN domain adaptation (`edgetune.train.adapt`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

SLOW_MOMENTUM = 0.1


def slow_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """Trainable BatchNorm layers whose running statistics lag behind their weights."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and m.momentum is not None
            and m.momentum < SLOW_MOMENTUM and any(p.requires_grad for p in m.parameters())]


def all_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer that keeps running statistics, frozen or not."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, layers: list[_BatchNorm], loader, device) -> int:
    """Reset `layers`' statistics and average them over `loader`; returns images seen."""
    momentum = [m.momentum for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch, not an exponential one
    model.eval()
    for m in layers:
        m.train()
    seen = 0
    try:
        for images, _ in loader:
            model(images.to(device))
            seen += len(images)
    finally:
        for m, mom in zip(layers, momentum):
            m.momentum = mom
        model.train(was_training)
    return seen


def adapt_bn(model: nn.Module, loader, device) -> int:
    """AdaBN: every BatchNorm layer's statistics from `loader`'s images; returns images seen."""
    return adapt_batchnorm(model, all_batchnorms(model), loader, device)
