"""A torchvision classifier as an ordered list of stages whose composition is its forward pass.

The freeze plan trains a suffix of the network (the head, or the head and the top K blocks);
with the stages in hand, the frozen part is a prefix that can run once per image and be
cached, and the trainable part is a suffix that trains on the cached output. The per-family
tables below mirror each model's own `forward`; `tests/test_stages.py` checks that the
composition equals `model(x)` for every family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgetune.train.freeze import family_of


@dataclass(frozen=True)
class Stage:
    name: str  # parameter-name prefix, e.g. "layer3." ("" for parameter-free stages)
    module: nn.Module


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def stages_of(model: nn.Module, arch: str) -> list[Stage]:
    """`model`'s forward pass as stages, stem first, head last."""
    family = family_of(arch).name
    if family == "resnet":
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [Stage("stem", stem),
                *(Stage(f"layer{i}.", getattr(model, f"layer{i}")) for i in range(1, 5)),
                Stage("", nn.Sequential(model.avgpool, _Flatten())), Stage("fc.", model.fc)]
    if family == "regnet":
        blocks = [Stage(f"trunk_output.{n}.", m) for n, m in model.trunk_output.named_children()]
        return [Stage("stem.", model.stem), *blocks,
                Stage("", nn.Sequential(model.avgpool, _Flatten())), Stage("fc.", model.fc)]
    # mobilenet, efficientnet, convnext: features[i] blocks, a pool, a classifier
    blocks = [Stage(f"features.{n}.", m) for n, m in model.features.named_children()]
    pool = getattr(model, "avgpool", None) or nn.AdaptiveAvgPool2d(1)  # MobileNetV2 pools inline
    # ConvNeXt's classifier starts with a LayerNorm over channels and flattens itself.
    tail = nn.Sequential(pool) if family == "convnext" else nn.Sequential(pool, _Flatten())
    return [*blocks, Stage("", tail), Stage("classifier.", model.classifier)]


def _trainable(stage: Stage) -> bool:
    return any(p.requires_grad for p in stage.module.parameters())


@dataclass
class Split:
    """The frozen prefix and the trainable suffix of a model at its first trainable stage."""
    prefix: nn.Sequential
    suffix: nn.Sequential
    index: int  # stages in the prefix
    where: str  # what the prefix outputs, e.g. "the input of layer4"

    @property
    def empty_prefix(self) -> bool:
        return self.index == 0


def split(model: nn.Module, arch: str) -> Split:
    """Split after the last frozen stage (call after `FreezePlan.apply`).

    The plan trains the last K groups plus the head, so every stage after the first
    trainable one trains too: the prefix is frozen as a whole."""
    stages = stages_of(model, arch)
    index = next((i for i, s in enumerate(stages) if _trainable(s)), len(stages))
    frozen_after = [s.name for s in stages[index:] if s.name and not _trainable(s)]
    if frozen_after:
        raise RuntimeError(f"the trainable stages are not a suffix: {frozen_after} are frozen")
    if index >= len(stages) - 1:
        where = "the pooled features (head only)"
    else:
        where = f"the input of {stages[index].name.rstrip('.')}"
    return Split(nn.Sequential(*(s.module for s in stages[:index])),
                 nn.Sequential(*(s.module for s in stages[index:])), index, where)
